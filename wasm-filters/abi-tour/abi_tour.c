/*
 * abi-tour: a proxy-wasm filter in plain C against the raw ABI (v0.2.1) -- no SDK, no libc.
 *
 * Everything an SDK hides is spelled out in this one file:
 *   - the ABI version marker the host looks for (an exported, never-called function);
 *   - the allocator the host calls to copy data *into* the module (proxy_on_memory_allocate);
 *   - the callbacks the host calls (exports, proxy_on_*), each logging itself;
 *   - the host functions the module calls (imports from module "env", proxy_*);
 *   - reading the plugin configuration in proxy_on_configure.
 *
 * On every HTTP request it adds the request header `x-abi-tour-config: <the configuration it read>`,
 * and on the response `x-abi-tour-callbacks: <the callbacks this stream went through so far>`.
 *
 * Build (what `meshlab wasm build wasm-filters/abi-tour` runs):
 *   python -m ziglang cc -target wasm32-freestanding -nostdlib -Os ... -o build/filter.wasm abi_tour.c
 */

typedef unsigned int u32;
typedef unsigned long size_t; /* wasm32: 32 bits */

/* ---- ABI constants (proxy-wasm spec v0.2.1) ----------------------------------------------- */
enum { LOG_TRACE = 0, LOG_DEBUG = 1, LOG_INFO = 2, LOG_WARN = 3, LOG_ERROR = 4 };
enum { STATUS_OK = 0, STATUS_NOT_FOUND = 1 };
enum { ACTION_CONTINUE = 0 };
enum { MAP_REQUEST_HEADERS = 0, MAP_RESPONSE_HEADERS = 2 };
enum { BUFFER_PLUGIN_CONFIGURATION = 7 };

/* ---- imports: host functions, module "env" ------------------------------------------------ */
#define IMPORT(name) __attribute__((import_module("env"), import_name(#name)))
#define EXPORT(name) __attribute__((export_name(#name)))

IMPORT(proxy_log) int proxy_log(int level, const char *msg, size_t msg_size);
IMPORT(proxy_get_buffer_bytes)
int proxy_get_buffer_bytes(int buffer_type, size_t start, size_t max_size, char **ret_data, size_t *ret_size);
IMPORT(proxy_get_header_map_value)
int proxy_get_header_map_value(int map_type, const char *key, size_t key_size, char **ret_value, size_t *ret_size);
IMPORT(proxy_add_header_map_value)
int proxy_add_header_map_value(int map_type, const char *key, size_t key_size, const char *value, size_t value_size);
IMPORT(proxy_get_property)
int proxy_get_property(const char *path, size_t path_size, char **ret_value, size_t *ret_size);

/* ---- the ABI version marker: the host scans the exports for it ----------------------------- */
EXPORT(proxy_abi_version_0_2_1) void proxy_abi_version_0_2_1(void) {}

/* ---- memory ---------------------------------------------------------------------------------
 * The host never hands the module a pointer into its own memory. When a host function returns
 * data (a header value, the configuration), the host first calls proxy_on_memory_allocate(n) to
 * get n bytes *inside* the module's linear memory, copies the data there, and writes the pointer
 * and size into the module's out-parameters. From then on the module owns that memory and must
 * free it. This allocator keeps one free list per power-of-two size class, so steady traffic
 * reuses blocks instead of growing memory for ever.
 */
extern unsigned char __heap_base; /* set by the linker: first byte after static data and stack */
#define PAGE 65536u
#define MIN_CLASS 4 /* 16 bytes */
#define NUM_CLASSES 24
static void *free_lists[NUM_CLASSES];
static size_t heap_top, heap_end;
static u32 allocations; /* how many times the host (or we) allocated: shown in the logs */

static int size_class(size_t n) {
  int c = MIN_CLASS;
  while (((size_t)1 << c) < n + 8) c++;
  return c;
}

static void *alloc(size_t n) {
  int c = size_class(n);
  if (c >= NUM_CLASSES) return 0;
  allocations++;
  unsigned char *block = free_lists[c];
  if (block) {
    free_lists[c] = *(void **)(block + 8);
  } else {
    size_t want = (size_t)1 << c;
    if (!heap_top) heap_top = heap_end = ((size_t)&__heap_base + 15) & ~(size_t)15;
    if (heap_top + want > heap_end) {
      size_t pages = (heap_top + want - heap_end + PAGE - 1) / PAGE;
      if (__builtin_wasm_memory_grow(0, pages) == (size_t)-1) return 0;
      heap_end += pages * PAGE;
    }
    block = (unsigned char *)heap_top;
    heap_top += want;
  }
  *(u32 *)block = (u32)c; /* 8-byte header: the size class */
  return block + 8;
}

static void release(void *p) {
  if (!p) return;
  unsigned char *block = (unsigned char *)p - 8;
  int c = (int)*(u32 *)block;
  *(void **)(block + 8) = free_lists[c];
  free_lists[c] = block;
}

EXPORT(proxy_on_memory_allocate) void *proxy_on_memory_allocate(size_t size) { return alloc(size); }

/* ---- tiny string helpers (no libc here) ---------------------------------------------------- */
/* The compiler may emit calls to these for struct copies and array initialisers. */
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
static size_t cstrlen(const char *s) {
  size_t n = 0;
  while (s[n]) n++;
  return n;
}

typedef struct {
  char data[512];
  size_t len;
} Buf;

static void put(Buf *b, const char *s, size_t n) {
  for (size_t i = 0; i < n && b->len < sizeof b->data; i++) b->data[b->len++] = s[i];
}
static void puts_(Buf *b, const char *s) { put(b, s, cstrlen(s)); }
static void putu(Buf *b, u32 v) {
  char tmp[10];
  int n = 0;
  do tmp[n++] = (char)('0' + v % 10); while ((v /= 10));
  while (n) put(b, &tmp[--n], 1);
}

static void log_info(Buf *b) { proxy_log(LOG_INFO, b->data, b->len); }

/* Log "abi-tour: <callback>(<name>=<value>, ...)": one line per callback the host makes. */
static void log_call(const char *callback, const char *n1, u32 v1, const char *n2, u32 v2, const char *n3, u32 v3) {
  Buf b = {.len = 0};
  puts_(&b, "abi-tour: ");
  puts_(&b, callback);
  puts_(&b, "(");
  const char *names[3] = {n1, n2, n3};
  u32 values[3] = {v1, v2, v3};
  for (int i = 0; i < 3 && names[i]; i++) {
    if (i) puts_(&b, ", ");
    puts_(&b, names[i]);
    puts_(&b, "=");
    putu(&b, values[i]);
  }
  puts_(&b, ")");
  log_info(&b);
}

/* ---- state ---------------------------------------------------------------------------------
 * Several plugins (root contexts) can share one VM -- Envoy shares a VM between plugins with the
 * same vm_id and code -- so the configuration is kept per root context, and every stream context
 * remembers its root from proxy_on_context_create(stream, root).
 */
#define MAX_ROOTS 16
static struct {
  u32 id;
  Buf config;
} roots[MAX_ROOTS];

static Buf *config_of_root(u32 root_id, int create) {
  for (int i = 0; i < MAX_ROOTS; i++)
    if (roots[i].id == root_id) return &roots[i].config;
  if (create)
    for (int i = 0; i < MAX_ROOTS; i++)
      if (!roots[i].id) {
        roots[i].id = root_id;
        roots[i].config.len = 0;
        return &roots[i].config;
      }
  return 0;
}

/* Stream contexts: id -> root id and which callbacks it has seen (a small table; a tour, not a
 * high-traffic filter: beyond MAX_STREAMS concurrent streams the extra ones are not tracked). */
#define MAX_STREAMS 64
static struct {
  u32 id, root, seen;
} streams[MAX_STREAMS];
enum { SEEN_CREATE = 1, SEEN_REQUEST_HEADERS = 2, SEEN_RESPONSE_HEADERS = 4 };

static int stream_slot(u32 context_id) {
  for (int i = 0; i < MAX_STREAMS; i++)
    if (streams[i].id == context_id) return i;
  return -1;
}

static void forget(u32 context_id) {
  int i = stream_slot(context_id);
  if (i >= 0) streams[i].id = 0;
  for (int r = 0; r < MAX_ROOTS; r++)
    if (roots[r].id == context_id) roots[r].id = 0;
}

/* Header values may not contain control characters: replace them, like a careful SDK would. */
static void sanitise(Buf *b) {
  for (size_t i = 0; i < b->len; i++)
    if (b->data[i] < 0x20 || b->data[i] == 0x7f) b->data[i] = ' ';
}

/* ---- callbacks (exports) ------------------------------------------------------------------- */

/* Every context starts here: parent 0 means a root (plugin) context, otherwise an HTTP stream. */
EXPORT(proxy_on_context_create) void proxy_on_context_create(u32 context_id, u32 parent_context_id) {
  log_call("proxy_on_context_create", "context_id", context_id, "parent_context_id", parent_context_id, 0, 0);
  if (parent_context_id == 0) {
    config_of_root(context_id, 1);
    return;
  }
  for (int i = 0; i < MAX_STREAMS; i++)
    if (!streams[i].id) {
      streams[i].id = context_id;
      streams[i].root = parent_context_id;
      streams[i].seen = SEEN_CREATE;
      return;
    }
}

/* Once per VM, before any configuration. (Envoy passes the root context id as the first argument.) */
EXPORT(proxy_on_vm_start) int proxy_on_vm_start(u32 root_context_id, u32 vm_configuration_size) {
  log_call("proxy_on_vm_start", "root_context_id", root_context_id, "vm_configuration_size", vm_configuration_size, 0, 0);
  return 1; /* true: the VM is usable */
}

/* The plugin configuration arrives here: only its size; the bytes are fetched with a hostcall. */
EXPORT(proxy_on_configure) int proxy_on_configure(u32 root_context_id, u32 configuration_size) {
  log_call("proxy_on_configure", "root_context_id", root_context_id, "plugin_configuration_size", configuration_size, 0, 0);
  Buf *config = config_of_root(root_context_id, 1);
  if (!config) return 0; /* more plugins in this VM than the table holds: refuse */
  config->len = 0;
  if (configuration_size) {
    char *data = 0;
    size_t size = 0;
    u32 before = allocations;
    int status = proxy_get_buffer_bytes(BUFFER_PLUGIN_CONFIGURATION, 0, configuration_size, &data, &size);
    if (status != STATUS_OK) {
      log_call("proxy_get_buffer_bytes(PLUGIN_CONFIGURATION) failed", "status", (u32)status, 0, 0, 0, 0);
      return 0; /* false: Envoy rejects this configuration */
    }
    put(config, data, size);
    sanitise(config);
    Buf b = {.len = 0};
    puts_(&b, "abi-tour: proxy_get_buffer_bytes(PLUGIN_CONFIGURATION) -> ");
    putu(&b, (u32)size);
    puts_(&b, " bytes at ");
    putu(&b, (u32)(size_t)data);
    puts_(&b, " (the host called proxy_on_memory_allocate ");
    putu(&b, allocations - before);
    puts_(&b, "x): ");
    put(&b, config->data, config->len);
    log_info(&b);
    release(data); /* the module owns what the host copied in */
  }
  /* A property: the root id Envoy was configured with (Envoy `root_id`, Istio `pluginName`). */
  static const char path[] = "plugin_root_id";
  char *root_id = 0;
  size_t root_id_size = 0;
  if (proxy_get_property(path, sizeof path - 1, &root_id, &root_id_size) == STATUS_OK) {
    Buf b = {.len = 0};
    puts_(&b, "abi-tour: proxy_get_property(plugin_root_id) -> ");
    put(&b, root_id, root_id_size);
    log_info(&b);
    release(root_id);
  }
  return 1; /* true: configuration accepted */
}

EXPORT(proxy_on_request_headers)
int proxy_on_request_headers(u32 context_id, u32 num_headers, u32 end_of_stream) {
  log_call("proxy_on_request_headers", "context_id", context_id, "num_headers", num_headers, "end_of_stream", end_of_stream);
  int slot = stream_slot(context_id);
  if (slot >= 0) streams[slot].seen |= SEEN_REQUEST_HEADERS;
  Buf *config = slot >= 0 ? config_of_root(streams[slot].root, 0) : 0;

  char *path = 0;
  size_t path_size = 0;
  if (proxy_get_header_map_value(MAP_REQUEST_HEADERS, ":path", 5, &path, &path_size) == STATUS_OK) {
    Buf b = {.len = 0};
    puts_(&b, "abi-tour: proxy_get_header_map_value(:path) -> ");
    put(&b, path, path_size);
    log_info(&b);
    release(path);
  }
  static const char key[] = "x-abi-tour-config";
  const char *value = config && config->len ? config->data : "(no configuration)";
  size_t value_size = config && config->len ? config->len : cstrlen(value);
  proxy_add_header_map_value(MAP_REQUEST_HEADERS, key, sizeof key - 1, value, value_size);
  return ACTION_CONTINUE;
}

EXPORT(proxy_on_response_headers)
int proxy_on_response_headers(u32 context_id, u32 num_headers, u32 end_of_stream) {
  log_call("proxy_on_response_headers", "context_id", context_id, "num_headers", num_headers, "end_of_stream", end_of_stream);
  int slot = stream_slot(context_id);
  if (slot >= 0) streams[slot].seen |= SEEN_RESPONSE_HEADERS;
  Buf b = {.len = 0};
  u32 s = slot >= 0 ? streams[slot].seen : SEEN_RESPONSE_HEADERS;
  if (s & SEEN_CREATE) puts_(&b, "proxy_on_context_create,");
  if (s & SEEN_REQUEST_HEADERS) puts_(&b, "proxy_on_request_headers,");
  if (s & SEEN_RESPONSE_HEADERS) puts_(&b, "proxy_on_response_headers,");
  if (b.len) b.len--; /* drop the trailing comma */
  static const char key[] = "x-abi-tour-callbacks";
  proxy_add_header_map_value(MAP_RESPONSE_HEADERS, key, sizeof key - 1, b.data, b.len);
  return ACTION_CONTINUE;
}

/* Teardown of a context: done -> log -> delete. */
EXPORT(proxy_on_done) int proxy_on_done(u32 context_id) {
  log_call("proxy_on_done", "context_id", context_id, 0, 0, 0, 0);
  return 1; /* true: the host may delete the context now */
}

EXPORT(proxy_on_log) void proxy_on_log(u32 context_id) { log_call("proxy_on_log", "context_id", context_id, 0, 0, 0, 0); }

EXPORT(proxy_on_delete) void proxy_on_delete(u32 context_id) {
  log_call("proxy_on_delete", "context_id", context_id, "allocations_so_far", allocations, 0, 0);
  forget(context_id);
}
