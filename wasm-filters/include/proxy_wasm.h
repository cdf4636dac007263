/*
 * proxy_wasm.h: the raw proxy-wasm ABI (v0.2.1) for freestanding C, shared by the C filters in
 * wasm-filters/ (api-key, header-metric). abi-tour spells the same things out in its own file.
 *
 * Contents: ABI constants; host functions (imports from module "env"; only the ones a filter
 * calls end up in its import section); the ABI version marker and an allocator (exports); a few
 * string helpers; a small JSON reader for the plugin configuration; logging.
 *
 * Include it in exactly one .c file per filter: it defines the exported marker and allocator.
 */
#ifndef MESHLAB_PROXY_WASM_H
#define MESHLAB_PROXY_WASM_H

typedef unsigned int u32;
typedef unsigned long long u64;
typedef unsigned long size_t; /* wasm32: 32 bits */
typedef int bool_t;

/* ---- ABI constants (proxy-wasm spec v0.2.1) ------------------------------------------------ */
enum { LOG_TRACE = 0, LOG_DEBUG = 1, LOG_INFO = 2, LOG_WARN = 3, LOG_ERROR = 4, LOG_CRITICAL = 5 };
enum { STATUS_OK = 0, STATUS_NOT_FOUND = 1, STATUS_BAD_ARGUMENT = 2 };
enum { ACTION_CONTINUE = 0, ACTION_PAUSE = 1 };
enum { MAP_REQUEST_HEADERS = 0, MAP_REQUEST_TRAILERS = 1, MAP_RESPONSE_HEADERS = 2, MAP_RESPONSE_TRAILERS = 3 };
enum { BUFFER_VM_CONFIGURATION = 6, BUFFER_PLUGIN_CONFIGURATION = 7 };
enum { METRIC_COUNTER = 0, METRIC_GAUGE = 1, METRIC_HISTOGRAM = 2 };

/* ---- host functions (imports) ---------------------------------------------------------------- */
#define PW_IMPORT(name) __attribute__((import_module("env"), import_name(#name)))
#define PW_EXPORT(name) __attribute__((export_name(#name)))

PW_IMPORT(proxy_log) int proxy_log(int level, const char *msg, size_t msg_size);
PW_IMPORT(proxy_get_buffer_bytes)
int proxy_get_buffer_bytes(int buffer_type, size_t start, size_t max_size, char **ret_data, size_t *ret_size);
PW_IMPORT(proxy_get_header_map_value)
int proxy_get_header_map_value(int map_type, const char *key, size_t key_size, char **ret_value, size_t *ret_size);
PW_IMPORT(proxy_add_header_map_value)
int proxy_add_header_map_value(int map_type, const char *key, size_t key_size, const char *value, size_t value_size);
PW_IMPORT(proxy_remove_header_map_value) int proxy_remove_header_map_value(int map_type, const char *key, size_t key_size);
PW_IMPORT(proxy_send_local_response)
int proxy_send_local_response(u32 status_code, const char *details, size_t details_size, const char *body, size_t body_size,
                              const char *headers, size_t headers_size, int grpc_status);
PW_IMPORT(proxy_define_metric) int proxy_define_metric(int metric_type, const char *name, size_t name_size, u32 *ret_metric_id);
PW_IMPORT(proxy_increment_metric) int proxy_increment_metric(u32 metric_id, long long offset);

/* ---- exports every module needs -------------------------------------------------------------- */
PW_EXPORT(proxy_abi_version_0_2_1) void proxy_abi_version_0_2_1(void) {}

/* Allocator: one free list per power-of-two size class (8-byte header holds the class). The host
 * calls proxy_on_memory_allocate to copy data into the module; the module frees it with pw_free. */
extern unsigned char __heap_base;
#define PW_PAGE 65536u
#define PW_CLASSES 24
static void *pw_free_lists[PW_CLASSES];
static size_t pw_heap_top, pw_heap_end;

static void *pw_alloc(size_t n) {
  int c = 4;
  while (((size_t)1 << c) < n + 8) c++;
  if (c >= PW_CLASSES) return 0;
  unsigned char *block = pw_free_lists[c];
  if (block) {
    pw_free_lists[c] = *(void **)(block + 8);
  } else {
    size_t want = (size_t)1 << c;
    if (!pw_heap_top) pw_heap_top = pw_heap_end = ((size_t)&__heap_base + 15) & ~(size_t)15;
    if (pw_heap_top + want > pw_heap_end) {
      size_t pages = (pw_heap_top + want - pw_heap_end + PW_PAGE - 1) / PW_PAGE;
      if (__builtin_wasm_memory_grow(0, pages) == (size_t)-1) return 0;
      pw_heap_end += pages * PW_PAGE;
    }
    block = (unsigned char *)pw_heap_top;
    pw_heap_top += want;
  }
  *(u32 *)block = (u32)c;
  return block + 8;
}

static void pw_free(void *p) {
  if (!p) return;
  unsigned char *block = (unsigned char *)p - 8;
  int c = (int)*(u32 *)block;
  *(void **)(block + 8) = pw_free_lists[c];
  pw_free_lists[c] = block;
}

PW_EXPORT(proxy_on_memory_allocate) void *proxy_on_memory_allocate(size_t size) { return pw_alloc(size); }

/* ---- contexts -------------------------------------------------------------------------------
 * Envoy may run several plugin (root) contexts in one VM -- plugins with the same vm_id and code
 * share it -- each with its own configuration. A stream context knows its root only from
 * proxy_on_context_create(stream, root), so the filter remembers it here:
 *   pw_root_slot(root_id)  -> 0..PW_MAX_ROOTS-1, the slot holding that root's configuration
 *   pw_slot_of(stream_id)  -> the slot of the root the stream belongs to (or -1)
 */
#define PW_MAX_ROOTS 16
#define PW_STREAMS 1024 /* power of two; open addressing on the (sequential) context id */
static u32 pw_roots[PW_MAX_ROOTS];
static struct {
  u32 id, root;
} pw_streams[PW_STREAMS];

static int pw_root_slot(u32 root_id) {
  for (int i = 0; i < PW_MAX_ROOTS; i++)
    if (pw_roots[i] == root_id) return i;
  for (int i = 0; i < PW_MAX_ROOTS; i++)
    if (!pw_roots[i]) {
      pw_roots[i] = root_id;
      return i;
    }
  return -1;
}

static void pw_context_created(u32 id, u32 parent) {
  if (!parent) {
    pw_root_slot(id);
    return;
  }
  u32 i = id & (PW_STREAMS - 1);
  for (u32 n = 0; n < PW_STREAMS; n++, i = (i + 1) & (PW_STREAMS - 1))
    if (!pw_streams[i].id) {
      pw_streams[i].id = id;
      pw_streams[i].root = parent;
      return;
    }
}

static int pw_slot_of(u32 stream_id) {
  u32 i = stream_id & (PW_STREAMS - 1);
  for (u32 n = 0; n < PW_STREAMS && pw_streams[i].id; n++, i = (i + 1) & (PW_STREAMS - 1))
    if (pw_streams[i].id == stream_id) {
      for (int s = 0; s < PW_MAX_ROOTS; s++)
        if (pw_roots[s] == pw_streams[i].root) return s;
      return -1;
    }
  return -1;
}

static void pw_context_deleted(u32 id) {
  for (int s = 0; s < PW_MAX_ROOTS; s++)
    if (pw_roots[s] == id) pw_roots[s] = 0;
  u32 i = id & (PW_STREAMS - 1);
  for (u32 n = 0; n < PW_STREAMS && pw_streams[i].id; n++, i = (i + 1) & (PW_STREAMS - 1)) {
    if (pw_streams[i].id != id) continue;
    /* backward-shift deletion keeps every probe chain unbroken */
    u32 hole = i, j = i;
    for (;;) {
      j = (j + 1) & (PW_STREAMS - 1);
      if (!pw_streams[j].id) break;
      u32 home = pw_streams[j].id & (PW_STREAMS - 1);
      if (((j - home) & (PW_STREAMS - 1)) >= ((j - hole) & (PW_STREAMS - 1))) {
        pw_streams[hole] = pw_streams[j];
        hole = j;
      }
    }
    pw_streams[hole].id = 0;
    return;
  }
}

PW_EXPORT(proxy_on_context_create) void proxy_on_context_create(u32 context_id, u32 parent_context_id) {
  pw_context_created(context_id, parent_context_id);
}

PW_EXPORT(proxy_on_delete) void proxy_on_delete(u32 context_id) { pw_context_deleted(context_id); }

/* ---- strings --------------------------------------------------------------------------------- */
void *memcpy(void *dst, const void *src, size_t n) {
  unsigned char *d = dst;
  const unsigned char *s = src;
  while (n--) *d++ = *s++;
  return dst;
}
void *memset(void *dst, int v, size_t n) {
  unsigned char *d = dst;
  while (n--) *d++ = (unsigned char)v;
  return dst;
}
static size_t pw_strlen(const char *s) {
  size_t n = 0;
  while (s[n]) n++;
  return n;
}
static bool_t pw_eq(const char *a, size_t an, const char *b, size_t bn) {
  if (an != bn) return 0;
  for (size_t i = 0; i < an; i++)
    if (a[i] != b[i]) return 0;
  return 1;
}

/* A bounded string builder (truncates instead of overflowing). */
typedef struct {
  char data[512];
  size_t len;
} pw_buf;
static void pw_put(pw_buf *b, const char *s, size_t n) {
  for (size_t i = 0; i < n && b->len < sizeof b->data; i++) b->data[b->len++] = s[i];
}
static void pw_puts(pw_buf *b, const char *s) { pw_put(b, s, pw_strlen(s)); }
static void pw_putu(pw_buf *b, u64 v) {
  char tmp[20];
  int n = 0;
  do tmp[n++] = (char)('0' + v % 10); while ((v /= 10));
  while (n) pw_put(b, &tmp[--n], 1);
}
static void pw_log(int level, pw_buf *b) { proxy_log(level, b->data, b->len); }

/* ---- reading the plugin configuration --------------------------------------------------------
 * Returns the configuration bytes (owned by the caller: pw_free them), or 0 if there is none. */
static char *pw_plugin_configuration(size_t size, size_t *out_size) {
  char *data = 0;
  *out_size = 0;
  if (!size) return 0;
  if (proxy_get_buffer_bytes(BUFFER_PLUGIN_CONFIGURATION, 0, size, &data, out_size) != STATUS_OK) return 0;
  return data;
}

/* ---- a small JSON reader ----------------------------------------------------------------------
 * Enough for plugin configurations: find a member of the top-level object, read a string
 * (with escapes), iterate an array of strings. It validates what it reads and reports errors
 * instead of guessing. Not supported: \u escapes beyond ASCII (they become '?').
 */
typedef struct {
  const char *p, *end;
} pw_json;

static void pw_json_ws(pw_json *j) {
  while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) j->p++;
}

/* Skip one JSON value; returns 0 on malformed input. */
static bool_t pw_json_skip(pw_json *j, int depth) {
  pw_json_ws(j);
  if (j->p >= j->end || depth > 32) return 0;
  char c = *j->p;
  if (c == '"') {
    for (j->p++; j->p < j->end; j->p++) {
      if (*j->p == '\\') j->p++;
      else if (*j->p == '"') { j->p++; return 1; }
    }
    return 0;
  }
  if (c == '{' || c == '[') {
    char close = c == '{' ? '}' : ']';
    j->p++;
    pw_json_ws(j);
    if (j->p < j->end && *j->p == close) { j->p++; return 1; }
    for (;;) {
      if (c == '{') {
        if (!pw_json_skip(j, depth + 1)) return 0; /* key */
        pw_json_ws(j);
        if (j->p >= j->end || *j->p != ':') return 0;
        j->p++;
      }
      if (!pw_json_skip(j, depth + 1)) return 0;
      pw_json_ws(j);
      if (j->p >= j->end) return 0;
      if (*j->p == ',') { j->p++; continue; }
      if (*j->p == close) { j->p++; return 1; }
      return 0;
    }
  }
  /* number, true, false, null */
  const char *start = j->p;
  while (j->p < j->end && *j->p != ',' && *j->p != '}' && *j->p != ']' && *j->p != ' ' && *j->p != '\n' &&
         *j->p != '\t' && *j->p != '\r')
    j->p++;
  return j->p > start;
}

/* Decode the JSON string at j->p into out (NUL-terminated, at most cap-1 bytes). */
static bool_t pw_json_string(pw_json *j, char *out, size_t cap, size_t *out_len) {
  pw_json_ws(j);
  size_t n = 0;
  if (j->p >= j->end || *j->p != '"') return 0;
  for (j->p++; j->p < j->end; j->p++) {
    char c = *j->p;
    if (c == '"') {
      j->p++;
      out[n] = 0;
      *out_len = n;
      return 1;
    }
    if (c == '\\') {
      if (++j->p >= j->end) return 0;
      switch (*j->p) {
        case 'n': c = '\n'; break;
        case 't': c = '\t'; break;
        case 'r': c = '\r'; break;
        case 'b': c = '\b'; break;
        case 'f': c = '\f'; break;
        case 'u': {
          u32 v = 0;
          for (int i = 0; i < 4; i++) {
            if (++j->p >= j->end) return 0;
            char h = *j->p;
            int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
            if (d < 0) return 0;
            v = v * 16 + (u32)d;
          }
          c = v < 0x80 ? (char)v : '?';
          break;
        }
        default: c = *j->p; /* \" \\ \/ */
      }
    } else if ((unsigned char)c < 0x20) {
      return 0;
    }
    if (n + 1 >= cap) return 0; /* too long */
    out[n++] = c;
  }
  return 0;
}

/* Position j at the value of member `key` of the top-level object. */
static bool_t pw_json_member(const char *json, size_t len, const char *key, pw_json *j) {
  j->p = json;
  j->end = json + len;
  pw_json_ws(j);
  if (j->p >= j->end || *j->p != '{') return 0;
  j->p++;
  pw_json_ws(j);
  if (j->p < j->end && *j->p == '}') return 0;
  for (;;) {
    char name[128];
    size_t name_len;
    if (!pw_json_string(j, name, sizeof name, &name_len)) return 0;
    pw_json_ws(j);
    if (j->p >= j->end || *j->p != ':') return 0;
    j->p++;
    pw_json_ws(j);
    if (pw_eq(name, name_len, key, pw_strlen(key))) return 1;
    if (!pw_json_skip(j, 0)) return 0;
    pw_json_ws(j);
    if (j->p >= j->end || *j->p != ',') return 0;
    j->p++;
  }
}

/* Is the configuration a well-formed JSON object (nothing after it)? */
static bool_t pw_json_valid_object(const char *json, size_t len) {
  pw_json j = {json, json + len};
  pw_json_ws(&j);
  if (j.p >= j.end || *j.p != '{') return 0;
  if (!pw_json_skip(&j, 0)) return 0;
  pw_json_ws(&j);
  return j.p == j.end;
}

#endif
