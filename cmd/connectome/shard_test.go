package main

import (
	"errors"
	"testing"

	"connectome/pipeline"
)

func TestResolveShard(t *testing.T) {
	for _, tc := range []struct {
		name string
		flag string
		cfg  int
		env  map[string]string
		want pipeline.Shard
		bad  bool
	}{
		{name: "unsharded", want: pipeline.Shard{}},
		{name: "flag", flag: "2/4", want: pipeline.Shard{Index: 2, Count: 4}},
		{name: "flag agrees with config", flag: "2/4", cfg: 4, want: pipeline.Shard{Index: 2, Count: 4}},
		{name: "flag disagrees with config", flag: "2/4", cfg: 8, bad: true},
		{name: "flag beats env", flag: "1/4", env: map[string]string{envBatchIndex: "3", envBatchCount: "4"}, want: pipeline.Shard{Index: 1, Count: 4}},
		{name: "bad flag", flag: "4/4", bad: true},
		{name: "cloud batch", env: map[string]string{envBatchIndex: "3", envBatchCount: "4"}, want: pipeline.Shard{Index: 3, Count: 4}},
		{name: "cloud batch one task is the merge", cfg: 4, env: map[string]string{envBatchIndex: "0", envBatchCount: "1"}, want: pipeline.AllShards(4)},
		{name: "cloud batch one task unsharded", env: map[string]string{envBatchIndex: "0", envBatchCount: "1"}, want: pipeline.Shard{}},
		{name: "cloud batch count disagrees", cfg: 8, env: map[string]string{envBatchIndex: "3", envBatchCount: "4"}, bad: true},
		{name: "cloud batch garbage", env: map[string]string{envBatchIndex: "x", envBatchCount: "4"}, bad: true},
		{name: "kubernetes", cfg: 5, env: map[string]string{envK8sIndex: "4"}, want: pipeline.Shard{Index: 4, Count: 5}},
		{name: "kubernetes without count", env: map[string]string{envK8sIndex: "4"}, bad: true},
		{name: "kubernetes out of range", cfg: 4, env: map[string]string{envK8sIndex: "4"}, bad: true},
		{name: "config only: plan or merge", cfg: 6, want: pipeline.AllShards(6)},
		{name: "config one shard", cfg: 1, want: pipeline.Shard{}},
	} {
		got, _, err := resolveShard(tc.flag, tc.cfg, func(k string) string { return tc.env[k] })
		if tc.bad {
			var ue *pipeline.UsageError
			if !errors.As(err, &ue) {
				t.Errorf("%s: %v, %v; want a usage error", tc.name, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
}
