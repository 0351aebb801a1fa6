/* edgert plugin config helpers: typed reads of an instance's configuration for plugins
 * written in C, without a JSON parser. Plain C99 over host->config_get (plugin_abi.h);
 * nothing here is exported or linked.
 *
 *   int64_t x;
 *   if (edgert_config_int(host, ctx, "roi.x", &x) == EDGERT_OK) ...
 *
 * Each helper may be called from any thread (config_get may) and never blocks beyond it.
 * Results, the same for every helper:
 *   EDGERT_OK                    *out (or buf) holds the value.
 *   EDGERT_ERR_NOT_FOUND         no value at `key` (a dot path, as config_get takes it).
 *   EDGERT_ERR_WRONG_TYPE        the value has another type: a string, object, array,
 *                                bool or null given for a number; 1.5 or 1e3 for an int
 *                                (ints are integer literals only); a number outside
 *                                int64_t (or double) range; anything else for a bool
 *                                or a string.
 *   EDGERT_ERR_BUFFER_TOO_SMALL  edgert_config_string: the text and its NUL need more
 *                                than `size` bytes; buf holds "" (when size > 0).
 *   EDGERT_ERR_INVALID_ARGUMENT  NULL host, key or out; a string containing U+0000
 *                                (it cannot be a C string) or a malformed escape.
 *   other codes                  as config_get or malloc returned them.
 * On any error *out is left unchanged.
 */
#ifndef EDGERT_PLUGIN_CONFIG_H
#define EDGERT_PLUGIN_CONFIG_H

#include <edgert/plugin_abi.h>

#include <errno.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Scalars (numbers, true/false) fit in this many bytes as the host writes them. */
#define EDGERT_CONFIG_SCALAR_MAX 128

/* The JSON text at `key` into buf (size EDGERT_CONFIG_SCALAR_MAX); a value too long to
 * be a scalar is EDGERT_ERR_WRONG_TYPE. */
static inline edgert_status edgert_config_scalar_(const edgert_host_api* host, edgert_host_ctx* ctx,
                                                  const char* key, char* buf) {
  edgert_status st;
  if (host == NULL || key == NULL) return EDGERT_ERR_INVALID_ARGUMENT;
  st = host->config_get(ctx, key, buf, EDGERT_CONFIG_SCALAR_MAX, NULL);
  return st == EDGERT_ERR_BUFFER_TOO_SMALL ? EDGERT_ERR_WRONG_TYPE : st;
}

/* True when `text` is a JSON number (and, with `integer`, has no fraction or exponent). */
static inline int edgert_config_is_number_(const char* text, int integer) {
  const char* p = text;
  if (*p == '-') ++p;
  if (*p < '0' || *p > '9') return 0;
  while (*p >= '0' && *p <= '9') ++p;
  if (*p == '\0') return 1;
  if (integer) return 0;
  if (*p == '.') {
    ++p;
    if (*p < '0' || *p > '9') return 0;
    while (*p >= '0' && *p <= '9') ++p;
  }
  if (*p == 'e' || *p == 'E') {
    ++p;
    if (*p == '+' || *p == '-') ++p;
    if (*p < '0' || *p > '9') return 0;
    while (*p >= '0' && *p <= '9') ++p;
  }
  return *p == '\0';
}

/* The integer at `key`. */
static inline edgert_status edgert_config_int(const edgert_host_api* host, edgert_host_ctx* ctx, const char* key,
                                              int64_t* out) {
  char text[EDGERT_CONFIG_SCALAR_MAX];
  char* end = NULL;
  long long v;
  edgert_status st;
  if (out == NULL) return EDGERT_ERR_INVALID_ARGUMENT;
  st = edgert_config_scalar_(host, ctx, key, text);
  if (st != EDGERT_OK) return st;
  if (!edgert_config_is_number_(text, 1)) return EDGERT_ERR_WRONG_TYPE;
  errno = 0;
  v = strtoll(text, &end, 10);
  if (errno == ERANGE || end == text || *end != '\0') return EDGERT_ERR_WRONG_TYPE;
#if LLONG_MAX > INT64_MAX
  if (v < INT64_MIN || v > INT64_MAX) return EDGERT_ERR_WRONG_TYPE;
#endif
  *out = (int64_t)v;
  return EDGERT_OK;
}

/* The number (integer or not) at `key`. strtod honours LC_NUMERIC, JSON does not: the
 * decimal point is swapped for the locale's before parsing. */
static inline edgert_status edgert_config_double(const edgert_host_api* host, edgert_host_ctx* ctx, const char* key,
                                                 double* out) {
  char text[EDGERT_CONFIG_SCALAR_MAX];
  char local[EDGERT_CONFIG_SCALAR_MAX * 4];
  const char* point;
  char* end = NULL;
  size_t i, o = 0, plen;
  double v;
  edgert_status st;
  if (out == NULL) return EDGERT_ERR_INVALID_ARGUMENT;
  st = edgert_config_scalar_(host, ctx, key, text);
  if (st != EDGERT_OK) return st;
  if (!edgert_config_is_number_(text, 0)) return EDGERT_ERR_WRONG_TYPE;
  point = localeconv()->decimal_point;
  if (point == NULL || *point == '\0') point = ".";
  plen = strlen(point);
  for (i = 0; text[i] != '\0'; ++i) {
    if (text[i] == '.') {
      if (o + plen >= sizeof local) return EDGERT_ERR_WRONG_TYPE;
      memcpy(local + o, point, plen);
      o += plen;
    } else {
      if (o + 1 >= sizeof local) return EDGERT_ERR_WRONG_TYPE;
      local[o++] = text[i];
    }
  }
  local[o] = '\0';
  errno = 0;
  v = strtod(local, &end);
  if (end == local || *end != '\0') return EDGERT_ERR_WRONG_TYPE;
  if (errno == ERANGE && (v == HUGE_VAL || v == -HUGE_VAL)) return EDGERT_ERR_WRONG_TYPE;
  *out = v;
  return EDGERT_OK;
}

/* The boolean at `key`: 1 for true, 0 for false. */
static inline edgert_status edgert_config_bool(const edgert_host_api* host, edgert_host_ctx* ctx, const char* key,
                                               int* out) {
  char text[EDGERT_CONFIG_SCALAR_MAX];
  edgert_status st;
  if (out == NULL) return EDGERT_ERR_INVALID_ARGUMENT;
  st = edgert_config_scalar_(host, ctx, key, text);
  if (st != EDGERT_OK) return st;
  if (strcmp(text, "true") == 0) {
    *out = 1;
  } else if (strcmp(text, "false") == 0) {
    *out = 0;
  } else {
    return EDGERT_ERR_WRONG_TYPE;
  }
  return EDGERT_OK;
}

/* The value of four hex digits at p, or -1. */
static inline long edgert_config_hex4_(const char* p) {
  long v = 0;
  int k;
  for (k = 0; k < 4; ++k) {
    const char c = p[k];
    v <<= 4;
    if (c >= '0' && c <= '9') {
      v |= c - '0';
    } else if (c >= 'a' && c <= 'f') {
      v |= c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      v |= c - 'A' + 10;
    } else {
      return -1;
    }
  }
  return v;
}

/* Unescapes the JSON string literal `s` (quotes included) in place, as UTF-8 with a
 * NUL; every escape is at least as long as what it becomes, so writing never passes
 * reading. Returns the length, or -1 for a malformed literal or U+0000. */
static inline long edgert_config_unescape_(char* s) {
  const char* r = s + 1;
  char* w = s;
  if (*s != '"') return -1;
  for (;;) {
    unsigned long cp;
    char c = *r++;
    if (c == '\0') return -1;
    if (c == '"') break;
    if (c != '\\') {
      *w++ = c;
      continue;
    }
    c = *r++;
    switch (c) {
      case '"': *w++ = '"'; continue;
      case '\\': *w++ = '\\'; continue;
      case '/': *w++ = '/'; continue;
      case 'b': *w++ = '\b'; continue;
      case 'f': *w++ = '\f'; continue;
      case 'n': *w++ = '\n'; continue;
      case 'r': *w++ = '\r'; continue;
      case 't': *w++ = '\t'; continue;
      case 'u': break;
      default: return -1;
    }
    {
      const long hi = edgert_config_hex4_(r);
      if (hi < 0) return -1;
      r += 4;
      cp = (unsigned long)hi;
      if (cp >= 0xD800 && cp <= 0xDBFF) {
        long lo;
        if (r[0] != '\\' || r[1] != 'u') return -1;
        lo = edgert_config_hex4_(r + 2);
        if (lo < 0xDC00 || lo > 0xDFFF) return -1;
        r += 6;
        cp = 0x10000 + ((cp - 0xD800) << 10) + ((unsigned long)lo - 0xDC00);
      } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
        return -1;
      }
    }
    if (cp == 0) return -1;
    if (cp < 0x80) {
      *w++ = (char)cp;
    } else if (cp < 0x800) {
      *w++ = (char)(0xC0 | (cp >> 6));
      *w++ = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      *w++ = (char)(0xE0 | (cp >> 12));
      *w++ = (char)(0x80 | ((cp >> 6) & 0x3F));
      *w++ = (char)(0x80 | (cp & 0x3F));
    } else {
      *w++ = (char)(0xF0 | (cp >> 18));
      *w++ = (char)(0x80 | ((cp >> 12) & 0x3F));
      *w++ = (char)(0x80 | ((cp >> 6) & 0x3F));
      *w++ = (char)(0x80 | (cp & 0x3F));
    }
  }
  if (*r != '\0') return -1;
  *w = '\0';
  return (long)(w - s);
}

/* The string at `key`, unescaped, as UTF-8 with a NUL into buf (`size` bytes). */
static inline edgert_status edgert_config_string(const edgert_host_api* host, edgert_host_ctx* ctx, const char* key,
                                                 char* buf, size_t size) {
  size_t needed = 0;
  char* text;
  long n;
  int attempts;
  edgert_status st;
  if (host == NULL || key == NULL || (buf == NULL && size > 0)) return EDGERT_ERR_INVALID_ARGUMENT;
  st = host->config_get(ctx, key, NULL, 0, &needed);
  if (st != EDGERT_OK && st != EDGERT_ERR_BUFFER_TOO_SMALL) return st;
  if (needed < 3) return EDGERT_ERR_WRONG_TYPE; /* shortest string: "" and the NUL */
  text = (char*)malloc(needed);
  if (text == NULL) return EDGERT_ERR_NO_MEMORY;
  /* An update_config on another thread may publish a longer value between the two
   * reads: grow and read again (a few times at most; each read is one snapshot). */
  for (attempts = 0; attempts < 4; ++attempts) {
    size_t again = 0;
    char* bigger;
    st = host->config_get(ctx, key, text, needed, &again);
    if (st != EDGERT_ERR_BUFFER_TOO_SMALL || again <= needed) break;
    bigger = (char*)realloc(text, again);
    if (bigger == NULL) {
      st = EDGERT_ERR_NO_MEMORY;
      break;
    }
    text = bigger;
    needed = again;
  }
  if (st == EDGERT_OK && text[0] != '"') st = EDGERT_ERR_WRONG_TYPE;
  if (st == EDGERT_OK) {
    n = edgert_config_unescape_(text);
    if (n < 0) {
      st = EDGERT_ERR_INVALID_ARGUMENT;
    } else if ((size_t)n + 1 > size) {
      st = EDGERT_ERR_BUFFER_TOO_SMALL;
      if (size > 0) buf[0] = '\0';
    } else {
      memcpy(buf, text, (size_t)n + 1);
    }
  }
  free(text);
  return st;
}

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* EDGERT_PLUGIN_CONFIG_H */
