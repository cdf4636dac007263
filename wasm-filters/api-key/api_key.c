/*
 * api-key: reject HTTP requests that do not carry a valid API key, with a local reply.
 *
 * Plugin configuration (JSON):
 *   {"keys": ["key-1", "key-2"], "header": "x-api-key"}
 *     keys    required, 1-16 non-empty strings (each at most 127 bytes)
 *     header  optional, the request header that carries the key (default "x-api-key")
 *
 * A request without the header gets 401 "missing API key", one with an unknown key 401
 * "invalid API key" -- answered by Envoy itself through proxy_send_local_response; the request never
 * reaches the upstream. A request with a valid key continues, with the key header removed so the
 * secret does not travel further. A malformed configuration makes proxy_on_configure return false:
 * Envoy then rejects the configuration instead of running the filter open.
 */
#include "proxy_wasm.h"

#define MAX_KEYS 16
#define MAX_KEY_LEN 128

/* One configuration per plugin (root) context: see pw_root_slot in proxy_wasm.h. */
static struct config {
  char header[MAX_KEY_LEN];
  size_t header_len;
  char keys[MAX_KEYS][MAX_KEY_LEN];
  size_t key_lens[MAX_KEYS];
  int num_keys;
} configs[PW_MAX_ROOTS];

/* Compare without an early exit, so the time taken does not tell how many bytes matched. */
static bool_t same_key(const char *a, size_t an, const char *b, size_t bn) {
  unsigned char diff = (unsigned char)(an != bn);
  for (size_t i = 0; i < an; i++) diff |= (unsigned char)(a[i] ^ b[i < bn ? i : 0]);
  return diff == 0;
}

static int config_error(const char *what) {
  pw_buf b = {.len = 0};
  pw_puts(&b, "api-key: invalid configuration: ");
  pw_puts(&b, what);
  pw_puts(&b, " (expected {\"keys\": [\"...\"], \"header\": \"x-api-key\"})");
  pw_log(LOG_ERROR, &b);
  return 0; /* false: Envoy rejects this configuration */
}

static int configure(struct config *c, const char *json, size_t len) {
  memcpy(c->header, "x-api-key", 10);
  c->header_len = 9;
  c->num_keys = 0;
  if (!json || !pw_json_valid_object(json, len)) return config_error("not a JSON object");
  pw_json j;
  if (pw_json_member(json, len, "header", &j)) {
    if (!pw_json_string(&j, c->header, sizeof c->header, &c->header_len) || !c->header_len) return config_error("\"header\" must be a non-empty string");
    for (size_t i = 0; i < c->header_len; i++) /* header names are lower case in Envoy's maps */
      if (c->header[i] >= 'A' && c->header[i] <= 'Z') c->header[i] = (char)(c->header[i] - 'A' + 'a');
  }
  if (!pw_json_member(json, len, "keys", &j)) return config_error("\"keys\" is missing");
  pw_json_ws(&j);
  if (j.p >= j.end || *j.p != '[') return config_error("\"keys\" must be an array of strings");
  j.p++;
  pw_json_ws(&j);
  if (j.p < j.end && *j.p == ']') return config_error("\"keys\" is empty: no request could pass");
  for (;;) {
    if (c->num_keys == MAX_KEYS) return config_error("more than 16 keys");
    if (!pw_json_string(&j, c->keys[c->num_keys], MAX_KEY_LEN, &c->key_lens[c->num_keys]) || !c->key_lens[c->num_keys])
      return config_error("every key must be a non-empty string of at most 127 bytes");
    c->num_keys++;
    pw_json_ws(&j);
    if (j.p < j.end && *j.p == ',') { j.p++; continue; }
    if (j.p < j.end && *j.p == ']') break;
    return config_error("\"keys\" must be an array of strings");
  }
  pw_buf b = {.len = 0};
  pw_puts(&b, "api-key: configured: ");
  pw_putu(&b, (u64)c->num_keys);
  pw_puts(&b, " key(s), header ");
  pw_put(&b, c->header, c->header_len);
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

/* Serialised header map (ABI 2.6): u32 count, then (u32 key_len, u32 value_len) per pair, then
 * each key and value followed by a NUL. */
static size_t serialise_headers(char *out, const char *const *pairs, int n) {
  size_t pos = 4 + (size_t)n * 8;
  *(u32 *)out = (u32)n;
  for (int i = 0; i < n; i++) {
    size_t kl = pw_strlen(pairs[2 * i]), vl = pw_strlen(pairs[2 * i + 1]);
    *(u32 *)(out + 4 + i * 8) = (u32)kl;
    *(u32 *)(out + 8 + i * 8) = (u32)vl;
    memcpy(out + pos, pairs[2 * i], kl + 1);
    pos += kl + 1;
    memcpy(out + pos, pairs[2 * i + 1], vl + 1);
    pos += vl + 1;
  }
  return pos;
}

static int reject(const struct config *c, const char *details, const char *body) {
  static char www_authenticate[MAX_KEY_LEN + 32];
  pw_buf w = {.len = 0};
  pw_puts(&w, "ApiKey header=\"");
  pw_put(&w, c->header, c->header_len);
  pw_puts(&w, "\"");
  memcpy(www_authenticate, w.data, w.len);
  www_authenticate[w.len] = 0;
  const char *pairs[] = {"content-type", "text/plain", "www-authenticate", www_authenticate};
  static char serialised[512];
  size_t size = serialise_headers(serialised, pairs, 2);
  proxy_send_local_response(401, details, pw_strlen(details), body, pw_strlen(body), serialised, size, -1);
  pw_buf b = {.len = 0};
  pw_puts(&b, "api-key: rejected a request: ");
  pw_puts(&b, details);
  pw_log(LOG_INFO, &b);
  return ACTION_PAUSE; /* the local reply ends the stream: stop the filter chain here */
}

PW_EXPORT(proxy_on_request_headers) int proxy_on_request_headers(u32 context_id, u32 num_headers, u32 end_of_stream) {
  (void)num_headers;
  (void)end_of_stream;
  int slot = pw_slot_of(context_id);
  if (slot < 0) { /* cannot happen unless more than 1024 streams are open at once: fail closed */
    proxy_send_local_response(503, "api_key_no_config", 17, "api-key: no configuration\n", 26, 0, 0, -1);
    return ACTION_PAUSE;
  }
  const struct config *c = &configs[slot];
  char *value = 0;
  size_t value_len = 0;
  if (proxy_get_header_map_value(MAP_REQUEST_HEADERS, c->header, c->header_len, &value, &value_len) != STATUS_OK || !value_len) {
    pw_free(value);
    return reject(c, "api_key_missing", "missing API key\n");
  }
  bool_t ok = 0;
  for (int i = 0; i < c->num_keys; i++) ok |= same_key(value, value_len, c->keys[i], c->key_lens[i]);
  pw_free(value);
  if (!ok) return reject(c, "api_key_invalid", "invalid API key\n");
  proxy_remove_header_map_value(MAP_REQUEST_HEADERS, c->header, c->header_len); /* the secret stops here */
  return ACTION_CONTINUE;
}
