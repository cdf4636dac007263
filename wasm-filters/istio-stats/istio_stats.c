/*
 * istio-stats: Istio's standard request metrics, written as a raw proxy-wasm filter in C -- the
 * way Istio's own "stats" plugin shipped as Wasm (1.5-1.11) before it moved into the proxy.
 *
 * Metrics (Envoy's custom stat namespace "wasmcustom", so /stats/prometheus prints them under
 * their own names, without Envoy's "envoy_" prefix):
 *   istio_requests_total                  counter, one per label combination
 *   istio_request_duration_milliseconds   histogram, same labels
 * Labels: reporter, source_workload, source_workload_namespace, source_app, source_version,
 * source_cluster, destination_workload, destination_workload_namespace, destination_app,
 * destination_version, destination_service, destination_service_name,
 * destination_service_namespace, destination_cluster, request_protocol, response_code,
 * response_flags, connection_security_policy.
 *
 * Labels ride in the stat name as ".<label>=<value>;" and the proxy's bootstrap turns them into
 * Envoy tags (stats_config.stats_tags, one regex per label: meshlab.controlplane.telemetry),
 * which /stats/prometheus prints as Prometheus labels.
 *
 * Who the peer is comes from a metadata exchange, as in Istio: the client's filter adds its own
 * workload description to the request (header x-meshlab-peer-metadata), the server's filter reads
 * and removes it, and answers with its own description in the response, which the client's filter
 * reads and removes. (Istio's exchange uses x-envoy-peer-metadata carrying a base64 protobuf Struct;
 * this filter uses a plain key=value list.)
 *
 * Plugin configuration (JSON): who this proxy is and which side of a request it reports:
 *   {"reporter": "source"|"destination", "workload": "helloworld-v1", "namespace": "sample",
 *    "app": "helloworld", "version": "v1", "cluster": "cluster1",
 *    "service": "helloworld.sample.svc.cluster.local",        (service: for destination only)
 *    "services": "helloworld.sample.svc.cluster.local=helloworld/sample,api.example.com=api.example.com/egress"}
 * services (for source only): the service each outbound cluster is for, as Istio writes it into the
 * cluster's metadata (host, name, namespace; pilot/pkg/networking/core/cluster.go buildServiceMetadata).
 * The client's filter reads the upstream cluster's name (xds.cluster_name, "outbound|<port>|<subset>|<host>")
 * and takes destination_service, _name and _namespace from that table: like Istio's, a reply its own sidecar
 * makes (no healthy upstream) and a ServiceEntry host carry the service's values.
 */
#include "proxy_wasm.h"

PW_IMPORT(proxy_get_property) int proxy_get_property(const char *path, size_t path_size, char **ret_value, size_t *ret_size);
PW_IMPORT(proxy_record_metric) int proxy_record_metric(u32 metric_id, u64 value);

#define PEER_HEADER "x-meshlab-peer-metadata"
#define VALUE_MAX 96
#define NAME_MAX 1024
#define MAX_METRICS 512
#define STREAM_SLOTS 256
#define SERVICES_MAX 8192

enum { F_WORKLOAD, F_NAMESPACE, F_APP, F_VERSION, F_CLUSTER, F_SERVICE, F_COUNT };
static const char *FIELD_KEYS[F_COUNT] = {"workload", "namespace", "app", "version", "cluster", "service"};

typedef struct {
  char v[F_COUNT][VALUE_MAX];
  size_t n[F_COUNT];
} peer;

static struct config {
  bool_t outbound; /* reporter=source */
  peer self;
  char header[F_COUNT * (VALUE_MAX + 16)]; /* our own metadata, as sent to the peer */
  size_t header_len;
  char services[SERVICES_MAX]; /* "host=name/namespace,..." (source only) */
  size_t services_len;
} configs[PW_MAX_ROOTS];

/* The peer seen on each open stream (by context id; a slot reused by another stream is reset). */
static struct {
  u32 id;
  bool_t known;
  peer p;
} streams[STREAM_SLOTS];

/* Metric ids by a hash of their full name: define once, then reuse. */
static struct {
  u64 hash;
  u32 requests, duration;
} metrics[MAX_METRICS];
static int num_metrics;

/* A value safe inside the stat name: ';' '=' ',' would break the label encoding. Empty -> unknown. */
static void clean(const char *in, size_t len, char *out, size_t *out_len) {
  size_t n = len < VALUE_MAX - 1 ? len : VALUE_MAX - 1;
  for (size_t i = 0; i < n; i++) {
    char c = in[i];
    out[i] = (c == ';' || c == '=' || c == ',' || c < 0x21 || c > 0x7e) ? '_' : c;
  }
  *out_len = n;
}

static int config_error(const char *what) {
  pw_buf b = {.len = 0};
  pw_puts(&b, "istio-stats: invalid configuration: ");
  pw_puts(&b, what);
  pw_log(LOG_ERROR, &b);
  return 0;
}

static void encode(const peer *p, char *out, size_t cap, size_t *len) {
  size_t n = 0;
  for (int f = 0; f < F_COUNT; f++) {
    const char *k = FIELD_KEYS[f];
    size_t kl = pw_strlen(k);
    if (n + kl + 2 + p->n[f] >= cap) break;
    if (n) out[n++] = ',';
    memcpy(out + n, k, kl);
    n += kl;
    out[n++] = '=';
    memcpy(out + n, p->v[f], p->n[f]);
    n += p->n[f];
  }
  *len = n;
}

/* Parse "key=value,key=value" (unknown keys ignored, as a newer peer may send more). */
static void decode(const char *s, size_t len, peer *p) {
  memset(p, 0, sizeof *p);
  size_t i = 0;
  while (i < len) {
    size_t ks = i;
    while (i < len && s[i] != '=' && s[i] != ',') i++;
    size_t ke = i;
    if (i < len && s[i] == '=') i++;
    size_t vs = i;
    while (i < len && s[i] != ',') i++;
    for (int f = 0; f < F_COUNT; f++)
      if (pw_eq(s + ks, ke - ks, FIELD_KEYS[f], pw_strlen(FIELD_KEYS[f]))) clean(s + vs, i - vs, p->v[f], &p->n[f]);
    if (i < len) i++;
  }
}

PW_EXPORT(proxy_on_configure) int proxy_on_configure(u32 root_context_id, u32 configuration_size) {
  int slot = pw_root_slot(root_context_id);
  if (slot < 0) return config_error("too many plugins share this VM");
  struct config *c = &configs[slot];
  memset(c, 0, sizeof *c);
  size_t size;
  char *json = pw_plugin_configuration(configuration_size, &size);
  if (!json || !pw_json_valid_object(json, size)) {
    pw_free(json);
    return config_error("expected a JSON object with reporter, workload, namespace, cluster, ...");
  }
  pw_json j;
  char reporter[16];
  size_t rl = 0;
  if (!pw_json_member(json, size, "reporter", &j) || !pw_json_string(&j, reporter, sizeof reporter, &rl) ||
      !(pw_eq(reporter, rl, "source", 6) || pw_eq(reporter, rl, "destination", 11))) {
    pw_free(json);
    return config_error("\"reporter\" must be \"source\" or \"destination\"");
  }
  c->outbound = pw_eq(reporter, rl, "source", 6);
  for (int f = 0; f < F_COUNT; f++) {
    char raw[VALUE_MAX];
    size_t n = 0;
    if (pw_json_member(json, size, FIELD_KEYS[f], &j) && !pw_json_string(&j, raw, sizeof raw, &n)) {
      pw_free(json);
      return config_error("workload, namespace, app, version, cluster and service must be strings");
    }
    clean(raw, n, c->self.v[f], &c->self.n[f]);
  }
  if (pw_json_member(json, size, "services", &j) && !pw_json_string(&j, c->services, sizeof c->services, &c->services_len)) {
    pw_free(json);
    return config_error("\"services\" must be a string of host=name/namespace entries");
  }
  pw_free(json);
  if (!c->self.n[F_WORKLOAD] || !c->self.n[F_CLUSTER]) return config_error("\"workload\" and \"cluster\" are required");
  encode(&c->self, c->header, sizeof c->header, &c->header_len);
  pw_buf b = {.len = 0};
  pw_puts(&b, "istio-stats: reporting as ");
  pw_puts(&b, c->outbound ? "source" : "destination");
  pw_puts(&b, " for ");
  pw_put(&b, c->header, c->header_len);
  pw_log(LOG_INFO, &b);
  return 1;
}

static int stream_slot(u32 id, bool_t reset) {
  int s = (int)(id % STREAM_SLOTS);
  if (reset || streams[s].id != id) {
    streams[s].id = id;
    streams[s].known = 0;
  }
  return s;
}

static void read_peer(u32 context_id, int map) {
  char *value = 0;
  size_t len = 0;
  int s = stream_slot(context_id, 0);
  if (proxy_get_header_map_value(map, PEER_HEADER, sizeof PEER_HEADER - 1, &value, &len) == STATUS_OK && len) {
    decode(value, len, &streams[s].p);
    streams[s].known = 1;
    proxy_remove_header_map_value(map, PEER_HEADER, sizeof PEER_HEADER - 1);
  }
  pw_free(value);
}

PW_EXPORT(proxy_on_request_headers) int proxy_on_request_headers(u32 context_id, u32 num_headers, u32 end_of_stream) {
  (void)num_headers;
  (void)end_of_stream;
  int slot = pw_slot_of(context_id);
  if (slot < 0) return ACTION_CONTINUE;
  struct config *c = &configs[slot];
  stream_slot(context_id, 1);
  if (c->outbound) {
    proxy_remove_header_map_value(MAP_REQUEST_HEADERS, PEER_HEADER, sizeof PEER_HEADER - 1); /* never forward a forged one */
    proxy_add_header_map_value(MAP_REQUEST_HEADERS, PEER_HEADER, sizeof PEER_HEADER - 1, c->header, c->header_len);
  } else {
    read_peer(context_id, MAP_REQUEST_HEADERS);
  }
  return ACTION_CONTINUE;
}

PW_EXPORT(proxy_on_response_headers) int proxy_on_response_headers(u32 context_id, u32 num_headers, u32 end_of_stream) {
  (void)num_headers;
  (void)end_of_stream;
  int slot = pw_slot_of(context_id);
  if (slot < 0) return ACTION_CONTINUE;
  struct config *c = &configs[slot];
  if (c->outbound) {
    read_peer(context_id, MAP_RESPONSE_HEADERS);
  } else {
    proxy_remove_header_map_value(MAP_RESPONSE_HEADERS, PEER_HEADER, sizeof PEER_HEADER - 1);
    proxy_add_header_map_value(MAP_RESPONSE_HEADERS, PEER_HEADER, sizeof PEER_HEADER - 1, c->header, c->header_len);
  }
  return ACTION_CONTINUE;
}

/* A property as an integer (Envoy serializes int64 and durations as 8 little-endian bytes). */
static bool_t int_property(const char *path, size_t path_len, long long *out) {
  char *v = 0;
  size_t n = 0;
  bool_t ok = proxy_get_property(path, path_len, &v, &n) == STATUS_OK && n == 8;
  if (ok) {
    u64 x = 0;
    for (int i = 7; i >= 0; i--) x = (x << 8) | (unsigned char)v[i];
    *out = (long long)x;
  }
  pw_free(v);
  return ok;
}

/* Envoy's response flags (the legacy bit vector of response.flags) in access-log notation. */
static const char *FLAG_NAMES[] = {"LH", "UH", "UT", "LR", "UR", "UF", "UC", "UO", "NR", "DI", "FI", "RL", "UAEX", "RLSE",
                                   "DC", "URX", "SI", "IH", "DPE", "UMSDR", "RFCF", "NFCF", "DT", "UPE", "NC", "OM", "DF", "DO", "DR"};

typedef struct {
  char data[NAME_MAX];
  size_t len;
} big_buf;

static void big_put(big_buf *b, const char *s, size_t n) {
  for (size_t i = 0; i < n && b->len < sizeof b->data; i++) b->data[b->len++] = s[i];
}

static void put_label(big_buf *b, const char *name, const char *v, size_t n) {
  big_put(b, ".", 1);
  big_put(b, name, pw_strlen(name));
  big_put(b, "=", 1);
  if (n) big_put(b, v, n);
  else big_put(b, "unknown", 7);
  big_put(b, ";", 1);
}

static void put_peer(big_buf *b, const char *side, const peer *p) {
  static const char *suffix[F_COUNT] = {"_workload", "_workload_namespace", "_app", "_version", "_cluster", 0};
  for (int f = 0; f < F_SERVICE; f++) {
    char name[48];
    size_t sl = pw_strlen(side), xl = pw_strlen(suffix[f]);
    memcpy(name, side, sl);
    memcpy(name + sl, suffix[f], xl + 1);
    put_label(b, name, p->v[f], p->n[f]);
  }
}

static u64 fnv(const char *s, size_t n) {
  u64 h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
  return h;
}

/* The service of the upstream cluster this request went to, from the "services" table: its host, name
 * and namespace. 1 when the cluster is an outbound cluster ("outbound|<port>|<subset>|<host>") of a known
 * service. */
static bool_t cluster_service(const struct config *c, char *host, size_t *host_len, char *name, size_t *name_len, char *ns, size_t *ns_len) {
  char *v = 0;
  size_t n = 0;
  bool_t found = 0;
  if (c->services_len && proxy_get_property("xds\0cluster_name", 16, &v, &n) == STATUS_OK && n > 9 && pw_eq(v, 9, "outbound|", 9)) {
    size_t bars = 0, h = n;
    for (size_t i = 0; i < n; i++)
      if (v[i] == '|' && ++bars == 3) {
        h = i + 1;
        break;
      }
    for (size_t i = 0; h < n && i < c->services_len && !found; i++) {
      size_t eq = i, slash, end;
      while (eq < c->services_len && c->services[eq] != '=' && c->services[eq] != ',') eq++;
      for (slash = eq; slash < c->services_len && c->services[slash] != '/' && c->services[slash] != ','; slash++) {
      }
      for (end = slash; end < c->services_len && c->services[end] != ','; end++) {
      }
      if (eq < slash && slash < end && pw_eq(c->services + i, eq - i, v + h, n - h)) {
        clean(v + h, n - h, host, host_len);
        clean(c->services + eq + 1, slash - eq - 1, name, name_len);
        clean(c->services + slash + 1, end - slash - 1, ns, ns_len);
        found = 1;
      }
      i = end;
    }
  }
  pw_free(v);
  return found;
}

PW_EXPORT(proxy_on_log) void proxy_on_log(u32 context_id) {
  int slot = pw_slot_of(context_id);
  if (slot < 0) return;
  struct config *c = &configs[slot];
  int s = stream_slot(context_id, 0);
  peer unknown;
  memset(&unknown, 0, sizeof unknown);
  const peer *other = streams[s].known ? &streams[s].p : &unknown;
  const peer *src = c->outbound ? &c->self : other;
  const peer *dst = c->outbound ? other : &c->self;

  long long code = 0, flags = 0, duration_ns = 0, mtls = 0;
  if (!int_property("response\0code", 13, &code)) code = 0;
  if (!int_property("response\0flags", 14, &flags)) flags = 0;
  if (!int_property("request\0duration", 16, &duration_ns)) duration_ns = 0;
  if (!c->outbound) {
    char *v = 0;
    size_t n = 0;
    if (proxy_get_property("connection\0mtls", 15, &v, &n) == STATUS_OK && n == 1) mtls = v[0];
    pw_free(v);
  }

  /* destination_service: on the client, the service of the outbound cluster (Istio's cluster metadata);
   * else the server says which service it is; without an answer from it (a local reply) the Host the client
   * asked for, as Istio falls back to. */
  char svc[VALUE_MAX], sname[VALUE_MAX], sns[VALUE_MAX];
  size_t svc_len = 0, sname_len = 0, sns_len = 0;
  if (!(c->outbound && cluster_service(c, svc, &svc_len, sname, &sname_len, sns, &sns_len))) {
    svc_len = dst->n[F_SERVICE];
    memcpy(svc, dst->v[F_SERVICE], svc_len);
    if (!svc_len) {
      char *host = 0;
      size_t hl = 0;
      if (proxy_get_header_map_value(MAP_REQUEST_HEADERS, ":authority", 10, &host, &hl) == STATUS_OK) {
        size_t end = 0;
        while (end < hl && host[end] != ':') end++;
        clean(host, end, svc, &svc_len);
      }
      pw_free(host);
    }
    size_t dot = 0;
    while (dot < svc_len && svc[dot] != '.') dot++;
    size_t ns_end = dot + 1;
    while (ns_end < svc_len && svc[ns_end] != '.') ns_end++;
    memcpy(sname, svc, dot);
    sname_len = dot;
    sns_len = dot < svc_len ? ns_end - dot - 1 : 0;
    memcpy(sns, svc + dot + 1, sns_len);
  }

  big_buf lab = {.len = 0}; /* the labels, shared by both metrics */
  put_label(&lab, "reporter", c->outbound ? "source" : "destination", c->outbound ? 6 : 11);
  put_peer(&lab, "source", src);
  put_peer(&lab, "destination", dst);
  put_label(&lab, "destination_service", svc, svc_len);
  put_label(&lab, "destination_service_name", sname, sname_len);
  put_label(&lab, "destination_service_namespace", sns, sns_len);
  put_label(&lab, "request_protocol", "http", 4);
  pw_buf num = {.len = 0};
  pw_putu(&num, (u64)code);
  put_label(&lab, "response_code", num.data, num.len);
  pw_buf fl = {.len = 0};
  for (int i = 0; i < (int)(sizeof FLAG_NAMES / sizeof FLAG_NAMES[0]); i++)
    if (flags & (1ll << i)) {
      if (fl.len) pw_puts(&fl, ",");
      pw_puts(&fl, FLAG_NAMES[i]);
    }
  if (!fl.len) pw_puts(&fl, "-");
  put_label(&lab, "response_flags", fl.data, fl.len);
  const char *policy = c->outbound ? "unknown" : (mtls ? "mutual_tls" : "none");
  put_label(&lab, "connection_security_policy", policy, pw_strlen(policy));

  u64 h = fnv(lab.data, lab.len);
  int m = 0;
  while (m < num_metrics && metrics[m].hash != h) m++;
  if (m == num_metrics) {
    if (num_metrics == MAX_METRICS) {
      pw_buf b = {.len = 0};
      pw_puts(&b, "istio-stats: too many label combinations; this request is not counted");
      pw_log(LOG_WARN, &b);
      return;
    }
    big_buf name;
    const char *base[2] = {"istio_requests_total", "istio_request_duration_milliseconds"};
    u32 ids[2];
    for (int k = 0; k < 2; k++) {
      name.len = 0;
      big_put(&name, base[k], pw_strlen(base[k]));
      big_put(&name, lab.data, lab.len);
      if (proxy_define_metric(k ? METRIC_HISTOGRAM : METRIC_COUNTER, name.data, name.len, &ids[k]) != STATUS_OK) return;
    }
    metrics[m].hash = h;
    metrics[m].requests = ids[0];
    metrics[m].duration = ids[1];
    num_metrics++;
  }
  proxy_increment_metric(metrics[m].requests, 1);
  proxy_record_metric(metrics[m].duration, (u64)(duration_ns / 1000000));
}
