package dicomio

// JPEG 2000 (transfer syntaxes 1.2.840.10008.1.2.4.90, lossless only, and .91, lossy or
// lossless), one component, decoded by OpenJPEG: Debian's libopenjp2.so.7 (package
// libopenjp2-7, OpenJPEG 2.5), loaded at run time with dlopen. Neither OpenJPEG's headers nor
// the library are needed to build or start the binary: where the library is missing, only a
// JPEG 2000 slice fails, with an error wrapping ErrUnsupported that names the syntax, the
// library and its package, and the run goes on with other items.
//
// Environment:
//
//	CONNECTOME_OPENJPEG_LIB  path (or dlopen name) of the OpenJPEG library to load instead of
//	                         libopenjp2.so.7; read once, at the first JPEG 2000 slice.
//
// The frame is a J2K codestream, as DICOM stores it; a JP2 file (signature box) is accepted
// as well. OpenJPEG decodes in strict mode (OpenJPEG 2.5 and later), so a codestream cut short
// is an error rather than a blurred image.

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// The subset of OpenJPEG 2.5's openjpeg.h that the decoder needs, declared here so that the
// build needs no OpenJPEG header. opj_image_t and opj_image_comp_t have the exact layout of
// the public header (OPJ_UINT32 is uint32_t, OPJ_INT32 int32_t, OPJ_UINT16 uint16_t,
// OPJ_COLOR_SPACE an int-sized enum, OPJ_BOOL int); opj_dparameters_t is only passed to
// opj_set_default_decoder_parameters and opj_setup_decoder, so it is an opaque buffer, larger
// (8252 bytes in 2.5.0) and more aligned (4) than the real one.
typedef int j2k_bool;
typedef struct j2k_codec j2k_codec;   // opj_codec_t (void in the header)
typedef struct j2k_stream j2k_stream; // opj_stream_t (void in the header)

typedef struct {
	uint32_t dx, dy;    // XRsiz, YRsiz
	uint32_t w, h;      // data width, height
	uint32_t x0, y0;
	uint32_t prec;      // bits per sample
	uint32_t bpp;       // obsolete
	uint32_t sgnd;      // 1 signed
	uint32_t resno_decoded;
	uint32_t factor;    // reduction: divisions by 2 of the decoded size
	int32_t *data;
	uint16_t alpha;
} j2k_image_comp; // opj_image_comp_t

typedef struct {
	uint32_t x0, y0, x1, y1;
	uint32_t numcomps;
	int color_space; // OPJ_COLOR_SPACE
	j2k_image_comp *comps;
	unsigned char *icc_profile_buf;
	uint32_t icc_profile_len;
} j2k_image; // opj_image_t

typedef union {
	unsigned char bytes[16384];
	uint64_t u;
	double d;
	void *p;
} j2k_dparameters; // opj_dparameters_t, opaque

#if UINTPTR_MAX == 0xffffffffffffffffu
// Sizes and offsets measured with the real openjpeg.h (2.5.0, LP64).
_Static_assert(sizeof(j2k_image_comp) == 64 && offsetof(j2k_image_comp, prec) == 24 &&
	offsetof(j2k_image_comp, sgnd) == 32 && offsetof(j2k_image_comp, factor) == 40 &&
	offsetof(j2k_image_comp, data) == 48 && offsetof(j2k_image_comp, alpha) == 56,
	"opj_image_comp_t layout");
_Static_assert(sizeof(j2k_image) == 48 && offsetof(j2k_image, comps) == 24 &&
	offsetof(j2k_image, icc_profile_len) == 40, "opj_image_t layout");
#endif

enum { J2K_CODEC_J2K = 0, J2K_CODEC_JP2 = 2 }; // OPJ_CODEC_FORMAT
#define J2K_STREAM_CHUNK_SIZE 0x100000        // OPJ_J2K_STREAM_CHUNK_SIZE

typedef void (*j2k_msg_fn)(const char *msg, void *client_data);
typedef size_t (*j2k_read_fn)(void *buf, size_t n, void *user);
typedef int64_t (*j2k_skip_fn)(int64_t n, void *user);
typedef j2k_bool (*j2k_seek_fn)(int64_t off, void *user);

// The library's entry points, resolved with dlsym.
typedef struct {
	void *handle;
	const char *(*version)(void);
	j2k_stream *(*stream_create)(size_t buffer_size, j2k_bool is_input);
	void (*stream_destroy)(j2k_stream *);
	void (*stream_set_read_function)(j2k_stream *, j2k_read_fn);
	void (*stream_set_skip_function)(j2k_stream *, j2k_skip_fn);
	void (*stream_set_seek_function)(j2k_stream *, j2k_seek_fn);
	void (*stream_set_user_data)(j2k_stream *, void *, void (*)(void *));
	void (*stream_set_user_data_length)(j2k_stream *, uint64_t);
	j2k_codec *(*create_decompress)(int format);
	void (*destroy_codec)(j2k_codec *);
	void (*set_default_decoder_parameters)(j2k_dparameters *);
	j2k_bool (*setup_decoder)(j2k_codec *, j2k_dparameters *);
	j2k_bool (*decoder_set_strict_mode)(j2k_codec *, j2k_bool);
	j2k_bool (*set_info_handler)(j2k_codec *, j2k_msg_fn, void *);
	j2k_bool (*set_warning_handler)(j2k_codec *, j2k_msg_fn, void *);
	j2k_bool (*set_error_handler)(j2k_codec *, j2k_msg_fn, void *);
	j2k_bool (*read_header)(j2k_stream *, j2k_codec *, j2k_image **);
	j2k_bool (*decode)(j2k_codec *, j2k_stream *, j2k_image *);
	j2k_bool (*end_decompress)(j2k_codec *, j2k_stream *);
	void (*image_destroy)(j2k_image *);
} j2k_lib;

// j2k_load dlopens path into *lib. It returns 0, or -1 with the reason in err.
static int j2k_load(const char *path, j2k_lib *lib, char *err, size_t errlen) {
	memset(lib, 0, sizeof *lib);
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		const char *e = dlerror();
		snprintf(err, errlen, "%s", e ? e : "dlopen failed");
		return -1;
	}
	lib->handle = h;
#define J2K_SYM(field, name) \
	if (!(*(void **)(&lib->field) = dlsym(h, name))) { \
		snprintf(err, errlen, "no symbol %s (OpenJPEG 2.5 or later is needed)", name); \
		dlclose(h); \
		memset(lib, 0, sizeof *lib); \
		return -1; \
	}
	J2K_SYM(version, "opj_version")
	J2K_SYM(stream_create, "opj_stream_create")
	J2K_SYM(stream_destroy, "opj_stream_destroy")
	J2K_SYM(stream_set_read_function, "opj_stream_set_read_function")
	J2K_SYM(stream_set_skip_function, "opj_stream_set_skip_function")
	J2K_SYM(stream_set_seek_function, "opj_stream_set_seek_function")
	J2K_SYM(stream_set_user_data, "opj_stream_set_user_data")
	J2K_SYM(stream_set_user_data_length, "opj_stream_set_user_data_length")
	J2K_SYM(create_decompress, "opj_create_decompress")
	J2K_SYM(destroy_codec, "opj_destroy_codec")
	J2K_SYM(set_default_decoder_parameters, "opj_set_default_decoder_parameters")
	J2K_SYM(setup_decoder, "opj_setup_decoder")
	J2K_SYM(decoder_set_strict_mode, "opj_decoder_set_strict_mode")
	J2K_SYM(set_info_handler, "opj_set_info_handler")
	J2K_SYM(set_warning_handler, "opj_set_warning_handler")
	J2K_SYM(set_error_handler, "opj_set_error_handler")
	J2K_SYM(read_header, "opj_read_header")
	J2K_SYM(decode, "opj_decode")
	J2K_SYM(end_decompress, "opj_end_decompress")
	J2K_SYM(image_destroy, "opj_image_destroy")
#undef J2K_SYM
	return 0;
}

static const char *j2k_version(j2k_lib *lib) { return lib->version(); }

// The codec's messages: errors and warnings are kept (the first bytes of each) for the Go
// error; information is dropped.
typedef struct { char text[1024]; size_t n; } j2k_msgs;
typedef struct { j2k_msgs err, warn; } j2k_log;

static void j2k_append(j2k_msgs *m, const char *msg) {
	if (!msg) return;
	size_t k = strlen(msg);
	while (k > 0 && (msg[k-1] == '\n' || msg[k-1] == ' ')) k--;
	if (k == 0) return;
	if (m->n > 0 && m->n + 2 < sizeof m->text) { memcpy(m->text + m->n, "; ", 2); m->n += 2; }
	size_t room = sizeof m->text - 1 - m->n;
	if (k > room) k = room;
	memcpy(m->text + m->n, msg, k);
	m->n += k;
	m->text[m->n] = 0;
}
static void j2k_on_error(const char *msg, void *d) { j2k_append(&((j2k_log *)d)->err, msg); }
static void j2k_on_warning(const char *msg, void *d) { j2k_append(&((j2k_log *)d)->warn, msg); }
static void j2k_on_info(const char *msg, void *d) { (void)msg; (void)d; }

// A read-only stream over one frame in C memory.
typedef struct { const unsigned char *data; uint64_t len, pos; } j2k_mem;

static size_t j2k_mem_read(void *buf, size_t n, void *user) {
	j2k_mem *m = user;
	if (m->pos >= m->len) return (size_t)-1; // end of stream
	uint64_t k = m->len - m->pos;
	if (k > n) k = n;
	memcpy(buf, m->data + m->pos, k);
	m->pos += k;
	return (size_t)k;
}
static int64_t j2k_mem_skip(int64_t n, void *user) {
	j2k_mem *m = user;
	if (n < 0) {
		if ((uint64_t)(-n) > m->pos) return -1;
	} else if ((uint64_t)n > m->len - m->pos) {
		n = (int64_t)(m->len - m->pos); // as far as the data goes
	}
	m->pos += n;
	return n;
}
static j2k_bool j2k_mem_seek(int64_t off, void *user) {
	j2k_mem *m = user;
	if (off < 0 || (uint64_t)off > m->len) return 0;
	m->pos = (uint64_t)off;
	return 1;
}

// Thin wrappers: Go cannot call C function pointers.
static j2k_codec *j2k_create_decompress(j2k_lib *lib, int format) { return lib->create_decompress(format); }
static void j2k_destroy_codec(j2k_lib *lib, j2k_codec *c) { lib->destroy_codec(c); }
static int j2k_set_handlers(j2k_lib *lib, j2k_codec *c, j2k_log *log) {
	return lib->set_info_handler(c, j2k_on_info, log) && lib->set_warning_handler(c, j2k_on_warning, log) &&
		lib->set_error_handler(c, j2k_on_error, log);
}
static int j2k_setup_decoder(j2k_lib *lib, j2k_codec *c) {
	// The defaults: full resolution, all layers, whole image. OpenJPEG copies what it keeps.
	j2k_dparameters p;
	memset(&p, 0, sizeof p);
	lib->set_default_decoder_parameters(&p);
	return lib->setup_decoder(c, &p);
}
static int j2k_set_strict(j2k_lib *lib, j2k_codec *c) { return lib->decoder_set_strict_mode(c, 1); }
static j2k_stream *j2k_stream_over(j2k_lib *lib, j2k_mem *m) {
	j2k_stream *s = lib->stream_create(J2K_STREAM_CHUNK_SIZE, 1);
	if (!s) return NULL;
	lib->stream_set_read_function(s, j2k_mem_read);
	lib->stream_set_skip_function(s, j2k_mem_skip);
	lib->stream_set_seek_function(s, j2k_mem_seek);
	lib->stream_set_user_data(s, m, NULL); // m is freed by the caller, after the stream
	lib->stream_set_user_data_length(s, m->len);
	return s;
}
static void j2k_stream_destroy(j2k_lib *lib, j2k_stream *s) { lib->stream_destroy(s); }
static int j2k_read_header(j2k_lib *lib, j2k_stream *s, j2k_codec *c, j2k_image **img) { return lib->read_header(s, c, img); }
static int j2k_decode(j2k_lib *lib, j2k_codec *c, j2k_stream *s, j2k_image *img) { return lib->decode(c, s, img); }
static int j2k_end_decompress(j2k_lib *lib, j2k_codec *c, j2k_stream *s) { return lib->end_decompress(c, s); }
static void j2k_image_destroy(j2k_lib *lib, j2k_image *img) { lib->image_destroy(img); }
*/
import "C"

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"sync"
	"unsafe"
)

const (
	jpeg2000Lossless = "1.2.840.10008.1.2.4.90"
	jpeg2000         = "1.2.840.10008.1.2.4.91"

	// openJPEGLib is the library loaded unless CONNECTOME_OPENJPEG_LIB names another.
	openJPEGLib = "libopenjp2.so.7"
	// openJPEGEnv overrides the path of the library (tests point it at a missing file).
	openJPEGEnv = "CONNECTOME_OPENJPEG_LIB"
)

// openJPEG is a loaded library: its handle and entry points, in C memory.
type openJPEG struct {
	lib     *C.j2k_lib
	path    string
	version string
}

// The library is loaded once per process and never closed: a dlopen handle belongs to the
// process, not to a caller, and every decoder in every goroutine shares the same read-only
// table of entry points (OpenJPEG's codec objects are per call, so concurrent decodes are
// safe). A load that fails fails for the whole process too, and every JPEG 2000 slice gets
// the same error.
var (
	openJPEGOnce sync.Once
	openJPEGLoad *openJPEG
	openJPEGErr  error
)

// loadedOpenJPEG returns the process's library, loading it at the first call from
// $CONNECTOME_OPENJPEG_LIB, or else libopenjp2.so.7.
func loadedOpenJPEG() (*openJPEG, error) {
	openJPEGOnce.Do(func() {
		path := os.Getenv(openJPEGEnv)
		if path == "" {
			path = openJPEGLib
		}
		openJPEGLoad, openJPEGErr = loadOpenJPEG(path)
	})
	return openJPEGLoad, openJPEGErr
}

// loadOpenJPEG dlopens the OpenJPEG library at path and resolves its entry points. The
// error wraps ErrUnsupported and says how to get the library.
func loadOpenJPEG(path string) (*openJPEG, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	lib := (*C.j2k_lib)(C.calloc(1, C.size_t(unsafe.Sizeof(C.j2k_lib{}))))
	if lib == nil {
		return nil, fmt.Errorf("OpenJPEG: out of memory")
	}
	var msg [512]C.char
	if C.j2k_load(cpath, lib, &msg[0], C.size_t(len(msg))) != 0 {
		C.free(unsafe.Pointer(lib))
		return nil, fmt.Errorf("OpenJPEG library %s (%s) cannot be loaded: %s; install the Debian package libopenjp2-7 (scripts/install-debian-deps.sh), or set %s to the library's path: %w",
			path, openJPEGLib, C.GoString(&msg[0]), openJPEGEnv, ErrUnsupported)
	}
	return &openJPEG{lib: lib, path: path, version: C.GoString(C.j2k_version(lib))}, nil
}

// j2kSignature is the JP2 signature box; a bare codestream starts with SOC, SIZ (FF4F FF51).
var j2kSignature = []byte{0, 0, 0, 0x0C, 'j', 'P', ' ', ' ', 0x0D, 0x0A, 0x87, 0x0A}

// j2kComponent is what OpenJPEG reports of the image and of its first component.
type j2kComponent struct {
	Components       int // in the image
	X0, Y0, X1, Y1   int // image area on the reference grid
	Width, Height    int // of component 0
	DX, DY           int // subsampling
	Precision        int
	Signed           bool
	Factor           int // resolution reduction
	ResolutionsCoded int // resno_decoded
}

// decodeJPEG2000 decodes one frame of transfer syntax ts into rows×cols samples of
// bitsAllocated bits (8 or 16), little-endian, as the uncompressed Pixel Data would hold them.
func decodeJPEG2000(frame []byte, ts string, rows, cols, bitsAllocated int, signed bool) ([]byte, error) {
	if bitsAllocated != 8 && bitsAllocated != 16 {
		return nil, fmt.Errorf("JPEG 2000 (transfer syntax %s) with %d bits allocated: %w", ts, bitsAllocated, ErrUnsupported)
	}
	lib, err := loadedOpenJPEG()
	if err != nil {
		return nil, fmt.Errorf("JPEG 2000 (transfer syntax %s): %w", ts, err)
	}
	var out []byte
	_, err = lib.decode(frame, rows, cols, func(c j2kComponent, samples []int32) error {
		var e error
		out, e = j2kSamples(c, samples, bitsAllocated, signed)
		return e
	})
	if err != nil {
		return nil, fmt.Errorf("JPEG 2000 (transfer syntax %s): %w", ts, err)
	}
	return out, nil
}

// decode runs OpenJPEG on frame and, where the image is one component of rows×cols at full
// resolution, hands its samples (OpenJPEG's memory, valid only during the call) to use. It
// returns what OpenJPEG reports of the image, also on most errors.
func (o *openJPEG) decode(frame []byte, rows, cols int, use func(j2kComponent, []int32) error) (j2kComponent, error) {
	var info j2kComponent
	format := C.int(C.J2K_CODEC_J2K)
	switch {
	case bytes.HasPrefix(frame, j2kSignature):
		format = C.J2K_CODEC_JP2
	case len(frame) < 4 || frame[0] != 0xFF || frame[1] != 0x4F || frame[2] != 0xFF || frame[3] != 0x51:
		return info, fmt.Errorf("the frame is neither a JPEG 2000 codestream (SOC, SIZ) nor a JP2 file: %w", ErrCorrupt)
	}
	lib := o.lib

	log := (*C.j2k_log)(C.calloc(1, C.size_t(unsafe.Sizeof(C.j2k_log{}))))
	if log == nil {
		return info, fmt.Errorf("OpenJPEG: out of memory")
	}
	defer C.free(unsafe.Pointer(log))
	failed := func(what string) error {
		msg := C.GoString(&log.err.text[0])
		if msg == "" {
			msg = C.GoString(&log.warn.text[0])
		}
		if msg == "" {
			msg = "no message"
		}
		return fmt.Errorf("OpenJPEG %s %s failed: %s: %w", o.version, what, msg, ErrCorrupt)
	}

	// The frame is copied to C memory: the stream reads it across several calls.
	mem := (*C.j2k_mem)(C.calloc(1, C.size_t(unsafe.Sizeof(C.j2k_mem{}))))
	if mem == nil {
		return info, fmt.Errorf("OpenJPEG: out of memory")
	}
	defer C.free(unsafe.Pointer(mem))
	data := C.CBytes(frame)
	defer C.free(data)
	mem.data, mem.len = (*C.uchar)(data), C.uint64_t(len(frame))

	codec := C.j2k_create_decompress(lib, format)
	if codec == nil {
		return info, fmt.Errorf("OpenJPEG %s: opj_create_decompress failed", o.version)
	}
	defer C.j2k_destroy_codec(lib, codec)
	if C.j2k_set_handlers(lib, codec, log) == 0 {
		return info, fmt.Errorf("OpenJPEG %s: opj_set_*_handler failed", o.version)
	}
	if C.j2k_setup_decoder(lib, codec) == 0 {
		return info, fmt.Errorf("OpenJPEG %s: opj_setup_decoder failed: %s", o.version, C.GoString(&log.err.text[0]))
	}
	if C.j2k_set_strict(lib, codec) == 0 {
		return info, fmt.Errorf("OpenJPEG %s: opj_decoder_set_strict_mode failed", o.version)
	}
	stream := C.j2k_stream_over(lib, mem)
	if stream == nil {
		return info, fmt.Errorf("OpenJPEG %s: opj_stream_create failed", o.version)
	}
	defer C.j2k_stream_destroy(lib, stream)

	var img *C.j2k_image
	ok := C.j2k_read_header(lib, stream, codec, &img)
	if img != nil {
		defer C.j2k_image_destroy(lib, img)
	}
	if ok == 0 || img == nil {
		return info, failed("header")
	}
	info.Components = int(img.numcomps)
	info.X0, info.Y0, info.X1, info.Y1 = int(img.x0), int(img.y0), int(img.x1), int(img.y1)
	if img.numcomps != 1 || img.comps == nil {
		return info, fmt.Errorf("JPEG 2000 image of %d components: %w", img.numcomps, ErrUnsupported)
	}
	fill := func(comp *C.j2k_image_comp) {
		info.Width, info.Height, info.DX, info.DY = int(comp.w), int(comp.h), int(comp.dx), int(comp.dy)
		info.Precision, info.Signed = int(comp.prec), comp.sgnd != 0
		info.Factor, info.ResolutionsCoded = int(comp.factor), int(comp.resno_decoded)
	}
	fill(img.comps)
	// Checked before decoding, so that a hostile header cannot make OpenJPEG allocate much.
	if err := info.check(rows, cols); err != nil {
		return info, err
	}
	if C.j2k_decode(lib, codec, stream, img) == 0 {
		return info, failed("decode")
	}
	if C.j2k_end_decompress(lib, codec, stream) == 0 {
		return info, failed("end of decompression")
	}
	// Read again: decoding a JP2 file may replace the components (a palette expands one
	// component into three).
	info.Components = int(img.numcomps)
	if img.numcomps != 1 || img.comps == nil {
		return info, fmt.Errorf("JPEG 2000 image decoded to %d components: %w", img.numcomps, ErrUnsupported)
	}
	comp := img.comps
	fill(comp)
	if err := info.check(rows, cols); err != nil {
		return info, err
	}
	if comp.data == nil {
		return info, fmt.Errorf("OpenJPEG %s decoded no samples: %w", o.version, ErrCorrupt)
	}
	return info, use(info, unsafe.Slice((*int32)(unsafe.Pointer(comp.data)), rows*cols))
}

// check refuses what decodeJPEG2000 does not decode: a size other than rows×cols, a reduced
// resolution, subsampling, precision outside 1..16.
func (c j2kComponent) check(rows, cols int) error {
	switch {
	case c.Factor != 0:
		return fmt.Errorf("JPEG 2000 decoded at reduced resolution (factor %d): %w", c.Factor, ErrUnsupported)
	case c.DX != 1 || c.DY != 1:
		return fmt.Errorf("JPEG 2000 component subsampled %d×%d: %w", c.DX, c.DY, ErrUnsupported)
	case c.Width != cols || c.Height != rows:
		return fmt.Errorf("JPEG 2000 image is %d×%d, the header says %d×%d: %w", c.Height, c.Width, rows, cols, ErrCorrupt)
	case c.Precision < 1 || c.Precision > 16:
		return fmt.Errorf("JPEG 2000 precision of %d bits: %w", c.Precision, ErrUnsupported)
	}
	return nil
}

// j2kSamples writes decoded samples as native little-endian Pixel Data of bitsAllocated bits.
// Where the codestream's signedness differs from PixelRepresentation (encoders that write
// signed CT as unsigned, PS3.5 8.2.4), the low Precision bits are reinterpreted as
// PixelRepresentation says, as pydicom does (its J2K sign correction). A sample that does not
// fit bitsAllocated bits (signed or not) is an error.
func j2kSamples(c j2kComponent, samples []int32, bitsAllocated int, signed bool) ([]byte, error) {
	lo, hi := int32(0), int32(1)<<bitsAllocated-1
	if signed {
		lo, hi = -1<<(bitsAllocated-1), 1<<(bitsAllocated-1)-1
	}
	shift := 32 - c.Precision
	out := make([]byte, len(samples)*bitsAllocated/8)
	for i, v := range samples {
		if c.Signed != signed {
			if signed {
				v = v << shift >> shift
			} else {
				v = int32(uint32(v) << shift >> shift)
			}
		}
		if v < lo || v > hi {
			return nil, fmt.Errorf("JPEG 2000 sample %d of value %d does not fit %d bits (signed %v): %w", i, v, bitsAllocated, signed, ErrCorrupt)
		}
		if bitsAllocated == 8 {
			out[i] = byte(v)
		} else {
			binary.LittleEndian.PutUint16(out[2*i:], uint16(v))
		}
	}
	return out, nil
}
