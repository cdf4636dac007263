/*
 * header-metric: count HTTP requests by the value of a request header, as Envoy counters.
 *
 * Plugin configuration (JSON, every member optional):
 *   {"header": "x-user", "metric": "requests_by_user", "max_values": 32}
 *     header      the request header whose value is counted (default "x-user")
 *     metric      the counter's name prefix (default "requests_by_" + header, '-' -> '_')
 *     max_values  how many distinct values get their own counter (1-64, default 32)
 *
 * Each request increments the counter <metric>.<value> (defined with proxy_define_metric the first
 * time the value is seen, incremented with proxy_increment_metric). Requests without the header
 * count as <metric>._missing; values beyond max_values as <metric>._other (an attacker must not be
 * able to create unbounded numbers of stats). Characters other than [A-Za-z0-9_-] in a value
 * become '_' (a '.' would add a level to the stat name), and values are cut at 48 bytes.
 *
 * Envoy puts counters defined by Wasm modules under the custom stat namespace "wasmcustom":
 * /stats shows wasmcustom.requests_by_user.alice; Prometheus output (/stats/prometheus) strips the
 * namespace: requests_by_user_alice.
 */
#include "proxy_wasm.h"

#define MAX_VALUES 64
#define MAX_VALUE_LEN 48

/* One configuration (and one table of counters) per plugin (root) context: see pw_root_slot. */
static struct config {
  char header[64];
  size_t header_len;
  char metric[96];
  size_t metric_len;
  int max_values;
  struct {
    char value[MAX_VALUE_LEN];
    size_t len;
    u32 id;
  } seen[MAX_VALUES];
  int num_seen;
  u32 missing_id, other_id;
} configs[PW_MAX_ROOTS];

static bool_t define_counter(const struct config *c, const char *suffix, size_t suffix_len, u32 *id) {
  pw_buf b = {.len = 0};
  pw_put(&b, c->metric, c->metric_len);
  pw_puts(&b, ".");
  pw_put(&b, suffix, suffix_len);
  return proxy_define_metric(METRIC_COUNTER, b.data, b.len, id) == STATUS_OK;
}

static int config_error(const char *what) {
  pw_buf b = {.len = 0};
  pw_puts(&b, "header-metric: invalid configuration: ");
  pw_puts(&b, what);
  pw_log(LOG_ERROR, &b);
  return 0; /* false: Envoy rejects this configuration */
}

/* Characters allowed in a stat name. A '.' separates levels, so values never keep one. */
static bool_t name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
}

static int configure(struct config *c, const char *json, size_t len) {
  memcpy(c->header, "x-user", 7);
  c->header_len = 6;
  c->max_values = 32;
  c->num_seen = 0;
  bool_t metric_given = 0;
  if (json && len) {
    if (!pw_json_valid_object(json, len)) return config_error("not a JSON object");
    pw_json j;
    if (pw_json_member(json, len, "header", &j)) {
      if (!pw_json_string(&j, c->header, sizeof c->header, &c->header_len) || !c->header_len)
        return config_error("\"header\" must be a non-empty string of at most 63 bytes");
      for (size_t i = 0; i < c->header_len; i++)
        if (c->header[i] >= 'A' && c->header[i] <= 'Z') c->header[i] = (char)(c->header[i] - 'A' + 'a');
    }
    if (pw_json_member(json, len, "metric", &j)) {
      if (!pw_json_string(&j, c->metric, sizeof c->metric, &c->metric_len) || !c->metric_len)
        return config_error("\"metric\" must be a non-empty string of at most 95 bytes");
      for (size_t i = 0; i < c->metric_len; i++)
        if (!name_char(c->metric[i])) return config_error("\"metric\" may only use [A-Za-z0-9_.-]");
      metric_given = 1;
    }
    if (pw_json_member(json, len, "max_values", &j)) {
      pw_json_ws(&j);
      int v = 0, digits = 0;
      while (j.p < j.end && *j.p >= '0' && *j.p <= '9' && digits < 4) v = v * 10 + (*j.p++ - '0'), digits++;
      if (!digits || v < 1 || v > MAX_VALUES || (j.p < j.end && (*j.p == '.' || *j.p == 'e' || *j.p == 'E')))
        return config_error("\"max_values\" must be an integer from 1 to 64");
      c->max_values = v;
    }
  }
  if (!metric_given) { /* requests_by_<header>, with '-' and '.' -> '_' */
    pw_buf b = {.len = 0};
    pw_puts(&b, "requests_by_");
    for (size_t i = 0; i < c->header_len; i++) {
      char ch = c->header[i] == '-' || c->header[i] == '.' || !name_char(c->header[i]) ? '_' : c->header[i];
      pw_put(&b, &ch, 1);
    }
    c->metric_len = b.len < sizeof c->metric ? b.len : sizeof c->metric - 1;
    memcpy(c->metric, b.data, c->metric_len);
  }
  if (!define_counter(c, "_missing", 8, &c->missing_id) || !define_counter(c, "_other", 6, &c->other_id))
    return config_error("proxy_define_metric failed");
  pw_buf b = {.len = 0};
  pw_puts(&b, "header-metric: counting requests by ");
  pw_put(&b, c->header, c->header_len);
  pw_puts(&b, " as ");
  pw_put(&b, c->metric, c->metric_len);
  pw_puts(&b, ".<value> (at most ");
  pw_putu(&b, (u64)c->max_values);
  pw_puts(&b, " values)");
  pw_log(LOG_INFO, &b);
  return 1;
}

PW_EXPORT(proxy_on_configure) int proxy_on_configure(u32 root_context_id, u32 configuration_size) {
  int slot = pw_root_slot(root_context_id);
  if (slot < 0) return config_error("too many plugins share this VM");
  size_t size;
  char *json = pw_plugin_configuration(configuration_size, &size);
  int ok = configure(&configs[slot], json, size);
  pw_free(json);
  return ok;
}

static u32 counter_for(struct config *c, const char *raw, size_t raw_len) {
  char value[MAX_VALUE_LEN];
  size_t len = raw_len < MAX_VALUE_LEN ? raw_len : MAX_VALUE_LEN;
  for (size_t i = 0; i < len; i++) value[i] = name_char(raw[i]) && raw[i] != '.' ? raw[i] : '_';
  for (int i = 0; i < c->num_seen; i++)
    if (pw_eq(c->seen[i].value, c->seen[i].len, value, len)) return c->seen[i].id;
  if (c->num_seen >= c->max_values) return c->other_id;
  u32 id;
  if (!define_counter(c, value, len, &id)) return c->other_id;
  memcpy(c->seen[c->num_seen].value, value, len);
  c->seen[c->num_seen].len = len;
  c->seen[c->num_seen].id = id;
  c->num_seen++;
  pw_buf b = {.len = 0};
  pw_puts(&b, "header-metric: new counter ");
  pw_put(&b, c->metric, c->metric_len);
  pw_puts(&b, ".");
  pw_put(&b, value, len);
  pw_log(LOG_DEBUG, &b);
  return id;
}

PW_EXPORT(proxy_on_request_headers) int proxy_on_request_headers(u32 context_id, u32 num_headers, u32 end_of_stream) {
  (void)num_headers;
  (void)end_of_stream;
  int slot = pw_slot_of(context_id);
  if (slot < 0) return ACTION_CONTINUE; /* only with more than 1024 open streams: not counted */
  struct config *c = &configs[slot];
  char *value = 0;
  size_t len = 0;
  u32 id = c->missing_id;
  if (proxy_get_header_map_value(MAP_REQUEST_HEADERS, c->header, c->header_len, &value, &len) == STATUS_OK && len)
    id = counter_for(c, value, len);
  pw_free(value);
  proxy_increment_metric(id, 1);
  return ACTION_CONTINUE;
}
