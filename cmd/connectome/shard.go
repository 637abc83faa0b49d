package main

import (
	"fmt"
	"strconv"

	"connectome/pipeline"
)

// Environment variables that carry a task's index in the batch systems a sharded run maps
// onto (design §10): Google Cloud Batch array jobs set both BATCH_ variables; Kubernetes
// Indexed Jobs set JOB_COMPLETION_INDEX only, so N then comes from the config's shards.
const (
	envBatchIndex = "BATCH_TASK_INDEX"
	envBatchCount = "BATCH_TASK_COUNT"
	envK8sIndex   = "JOB_COMPLETION_INDEX"
)

// resolveShard decides this process's part of the run: --shard i/N, else the Cloud Batch
// variables, else the Kubernetes index with N from the config, else (shards > 1 in the
// config) the plan-or-merge view of a sharded run, else an unsharded run. A shard count that
// disagrees with the config's shards is a usage error: the merge would look for other parts.
func resolveShard(flag string, cfgShards int, getenv func(string) string) (pipeline.Shard, string, error) {
	check := func(sh pipeline.Shard, n int, from string) (pipeline.Shard, string, error) {
		if cfgShards > 0 && n != cfgShards {
			return pipeline.Shard{}, "", &pipeline.UsageError{Msg: fmt.Sprintf("%s says %d shards but the config's shards is %d", from, n, cfgShards)}
		}
		switch {
		case sh.Sharded():
		case n > 1:
			sh = pipeline.AllShards(n)
		default:
			sh = pipeline.Shard{}
		}
		return sh, from, nil
	}
	if flag != "" {
		sh, err := pipeline.ParseShard(flag)
		if err != nil {
			return pipeline.Shard{}, "", &pipeline.UsageError{Msg: "--shard: " + err.Error()}
		}
		return check(sh, sh.Count, "--shard")
	}
	if bi, bc := getenv(envBatchIndex), getenv(envBatchCount); bi != "" && bc != "" {
		i, err1 := strconv.Atoi(bi)
		n, err2 := strconv.Atoi(bc)
		if err1 != nil || err2 != nil {
			return pipeline.Shard{}, "", &pipeline.UsageError{Msg: fmt.Sprintf("%s=%q %s=%q: want integers", envBatchIndex, bi, envBatchCount, bc)}
		}
		if n == 1 {
			// A one-task job (the plan step or the merge) is no shard.
			return check(pipeline.Shard{}, max(cfgShards, 1), "config")
		}
		sh, err := pipeline.NewShard(i, n)
		if err != nil {
			return pipeline.Shard{}, "", &pipeline.UsageError{Msg: fmt.Sprintf("%s/%s: %v", envBatchIndex, envBatchCount, err)}
		}
		return check(sh, n, envBatchIndex+"/"+envBatchCount)
	}
	if ki := getenv(envK8sIndex); ki != "" {
		i, err := strconv.Atoi(ki)
		if err != nil {
			return pipeline.Shard{}, "", &pipeline.UsageError{Msg: fmt.Sprintf("%s=%q: want an integer", envK8sIndex, ki)}
		}
		if cfgShards < 1 {
			return pipeline.Shard{}, "", &pipeline.UsageError{Msg: fmt.Sprintf("%s is set but the config has no shards: set shards: N (the Job's completions) in the config or pass --shards N", envK8sIndex)}
		}
		sh, err := pipeline.NewShard(i, cfgShards)
		if err != nil {
			return pipeline.Shard{}, "", &pipeline.UsageError{Msg: fmt.Sprintf("%s: %v", envK8sIndex, err)}
		}
		return check(sh, cfgShards, envK8sIndex)
	}
	if cfgShards > 1 {
		return pipeline.AllShards(cfgShards), "config", nil
	}
	return pipeline.Shard{}, "", nil
}
