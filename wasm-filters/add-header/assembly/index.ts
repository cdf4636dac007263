// add-header: a proxy-wasm filter in AssemblyScript (@solo-io/proxy-runtime 0.1.8, AssemblyScript 0.17.14).
//
// Adds one response header whose name and value come from the JSON plugin configuration:
//   {"name": "x-hello", "value": "from wasm"}
// Envoy's root_id (Istio's WasmPlugin pluginName) must be "add_header": the name registered below.

// The ABI surface: proxy_abi_version_0_2_0, malloc and every proxy_on_* callback. Without this line
// the module exports no callbacks and Envoy refuses it ("Missing ... Proxy-Wasm ABI version").
export * from "@solo-io/proxy-runtime/proxy";
import {
  RootContext, Context, registerRootContext, log, LogLevelValues,
  FilterHeadersStatusValues, WasmResultValues, stream_context,
} from "@solo-io/proxy-runtime";
import * as imports from "@solo-io/proxy-runtime/imports";
import { free } from "@solo-io/proxy-runtime/malloc";

const PLUGIN_CONFIGURATION: u32 = 7; // proxy_buffer_type_t PLUGIN_CONFIGURATION

// ---- a small JSON reader: the members of one flat object --------------------------------------
// AssemblyScript 0.17 has no JSON parser. This one reads an object and keeps its string members;
// it refuses anything malformed rather than guessing.
class JsonObject {
  keys: Array<string> = new Array<string>();
  values: Array<string> = new Array<string>();
  error: string = "";

  get(key: string): string | null {
    for (let i = 0; i < this.keys.length; i++) if (this.keys[i] == key) return this.values[i];
    return null;
  }
}

class JsonReader {
  pos: i32 = 0;
  constructor(public text: string) {}

  ws(): void {
    while (this.pos < this.text.length) {
      const c = this.text.charCodeAt(this.pos);
      if (c != 0x20 && c != 0x09 && c != 0x0a && c != 0x0d) break;
      this.pos++;
    }
  }

  // Reads a JSON string at pos; returns null if there is none or it is malformed.
  str(): string | null {
    this.ws();
    if (this.pos >= this.text.length || this.text.charCodeAt(this.pos) != 0x22) return null;
    this.pos++;
    let out = "";
    while (this.pos < this.text.length) {
      const c = this.text.charCodeAt(this.pos++);
      if (c == 0x22) return out;
      if (c < 0x20) return null;
      if (c != 0x5c) { out += String.fromCharCode(c); continue; }
      if (this.pos >= this.text.length) return null;
      const e = this.text.charCodeAt(this.pos++);
      if (e == 0x6e) out += "\n";
      else if (e == 0x74) out += "\t";
      else if (e == 0x72) out += "\r";
      else if (e == 0x62) out += "\b";
      else if (e == 0x66) out += "\f";
      else if (e == 0x75) {
        if (this.pos + 4 > this.text.length) return null;
        let v = 0;
        for (let i = 0; i < 4; i++) {
          const h = this.text.charCodeAt(this.pos++);
          const d = h >= 0x30 && h <= 0x39 ? h - 0x30 : h >= 0x61 && h <= 0x66 ? h - 0x57 : h >= 0x41 && h <= 0x46 ? h - 0x37 : -1;
          if (d < 0) return null;
          v = v * 16 + d;
        }
        out += String.fromCharCode(v);
      } else if (e == 0x22 || e == 0x5c || e == 0x2f) out += String.fromCharCode(e);
      else return null;
    }
    return null;
  }

  // Skips any JSON value (nested ones too); false if malformed.
  skip(depth: i32): bool {
    this.ws();
    if (this.pos >= this.text.length || depth > 32) return false;
    const c = this.text.charCodeAt(this.pos);
    if (c == 0x22) return this.str() !== null;
    if (c == 0x7b || c == 0x5b) {
      const close = c == 0x7b ? 0x7d : 0x5d;
      this.pos++;
      this.ws();
      if (this.pos < this.text.length && this.text.charCodeAt(this.pos) == close) { this.pos++; return true; }
      while (true) {
        if (c == 0x7b) {
          if (this.str() === null) return false;
          this.ws();
          if (this.pos >= this.text.length || this.text.charCodeAt(this.pos) != 0x3a) return false;
          this.pos++;
        }
        if (!this.skip(depth + 1)) return false;
        this.ws();
        if (this.pos >= this.text.length) return false;
        const d = this.text.charCodeAt(this.pos++);
        if (d == 0x2c) continue;
        return d == close;
      }
    }
    const start = this.pos;
    while (this.pos < this.text.length) {
      const d = this.text.charCodeAt(this.pos);
      if (d == 0x2c || d == 0x7d || d == 0x5d || d == 0x20 || d == 0x0a || d == 0x09 || d == 0x0d) break;
      this.pos++;
    }
    const word = this.text.substring(start, this.pos);
    if (word == "true" || word == "false" || word == "null") return true;
    return word.length > 0 && !isNaN(parseFloat(word));
  }

  object(): JsonObject {
    const obj = new JsonObject();
    this.ws();
    if (this.pos >= this.text.length || this.text.charCodeAt(this.pos) != 0x7b) { obj.error = "not a JSON object"; return obj; }
    this.pos++;
    this.ws();
    if (this.pos < this.text.length && this.text.charCodeAt(this.pos) == 0x7d) { this.pos++; return this.end(obj); }
    while (true) {
      const key = this.str();
      this.ws();
      if (key === null || this.pos >= this.text.length || this.text.charCodeAt(this.pos) != 0x3a) { obj.error = "malformed JSON"; return obj; }
      this.pos++;
      this.ws();
      const value = this.text.charCodeAt(this.pos) == 0x22 ? this.str() : null;
      if (value !== null) {
        obj.keys.push(key);
        obj.values.push(value);
      } else if (!this.skip(0)) { obj.error = "malformed JSON"; return obj; }
      this.ws();
      if (this.pos >= this.text.length) { obj.error = "malformed JSON"; return obj; }
      const d = this.text.charCodeAt(this.pos++);
      if (d == 0x2c) continue;
      if (d == 0x7d) return this.end(obj);
      obj.error = "malformed JSON";
      return obj;
    }
    return obj;
  }

  end(obj: JsonObject): JsonObject {
    this.ws();
    if (this.pos != this.text.length) obj.error = "unexpected text after the JSON object";
    return obj;
  }
}

// An HTTP header name is a token (RFC 9110); Envoy keeps names in lower case.
function validHeaderName(name: string): bool {
  if (name.length == 0) return false;
  const allowed = "!#$%&'*+-.^_`|~";
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    const ok = (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || allowed.indexOf(String.fromCharCode(c)) >= 0;
    if (!ok) return false;
  }
  return true;
}

function validHeaderValue(value: string): bool {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if ((c < 0x20 && c != 0x09) || c == 0x7f) return false;
  }
  return true;
}

// ---- the root (plugin) context: one per plugin configuration ------------------------------------
class AddHeaderRoot extends RootContext {
  headerName: string = "";
  headerValue: string = "";

  // Overrides the SDK's onConfigure: 0.1.8 passes the configuration size where the ABI expects a
  // pointer to it, so this reads the buffer with the hostcall directly.
  onConfigure(configuration_size: u32): bool {
    const raw = readPluginConfiguration(configuration_size);
    const cfg = new JsonReader(raw).object();
    const name = cfg.get("name");
    const value = cfg.get("value");
    let problem = cfg.error;
    if (problem == "" && name === null) problem = "\"name\" (a string) is missing";
    if (problem == "" && value === null) problem = "\"value\" (a string) is missing";
    if (problem == "" && !validHeaderName((name as string).toLowerCase())) problem = "\"name\" is not a valid header name";
    if (problem == "" && !validHeaderValue(value as string)) problem = "\"value\" contains control characters";
    if (problem != "") {
      // false makes Envoy reject this configuration (the previous one stays in force)
      log(LogLevelValues.error, "add-header: invalid configuration: " + problem + " in " + raw +
        " (expected {\"name\": \"x-hello\", \"value\": \"from wasm\"})");
      return false;
    }
    this.headerName = (name as string).toLowerCase();
    this.headerValue = value as string;
    log(LogLevelValues.info, "add-header: configured: " + this.headerName + ": " + this.headerValue);
    return true;
  }

  createContext(context_id: u32): Context {
    return new AddHeader(context_id, this);
  }
}

// proxy_get_buffer_bytes(PLUGIN_CONFIGURATION): the host allocates the bytes inside this module
// (through the exported malloc) and writes their address and size into the two out-parameters.
function readPluginConfiguration(size: u32): string {
  if (size == 0) return "";
  const out = new ArrayBuffer(8); // [0..4) data pointer, [4..8) data size
  const outPtr = changetype<usize>(out);
  const status = imports.proxy_get_buffer_bytes(PLUGIN_CONFIGURATION, 0, size, outPtr, outPtr + 4);
  if (status != WasmResultValues.Ok) return "";
  const data = load<usize>(outPtr);
  const length = load<u32>(outPtr + 4);
  const text = String.UTF8.decodeUnsafe(data, length);
  free(data); // the module owns what the host copied in
  return text;
}

// ---- the HTTP (stream) context: one per request --------------------------------------------------
class AddHeader extends Context {
  root: AddHeaderRoot;

  constructor(context_id: u32, root: AddHeaderRoot) {
    super(context_id, root);
    this.root = root;
  }

  onResponseHeaders(num_headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.response.add(this.root.headerName, this.root.headerValue);
    return FilterHeadersStatusValues.Continue;
  }
}

registerRootContext((context_id: u32): RootContext => new AddHeaderRoot(context_id), "add_header");
