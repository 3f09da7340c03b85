// libcurl's curl_easy_setopt/getinfo are variadic, which Swift cannot call; these
// typed wrappers are the only reason this header exists.
#ifndef MSTUNNEL_CCURL_SHIM_H
#define MSTUNNEL_CCURL_SHIM_H
#include <curl/curl.h>
static inline CURLcode mst_curl_setopt_long(CURL *c, CURLoption o, long v) { return curl_easy_setopt(c, o, v); }
static inline CURLcode mst_curl_setopt_string(CURL *c, CURLoption o, const char *v) { return curl_easy_setopt(c, o, v); }
static inline CURLcode mst_curl_setopt_pointer(CURL *c, CURLoption o, void *v) { return curl_easy_setopt(c, o, v); }
static inline CURLcode mst_curl_setopt_write_function(CURL *c, size_t (*f)(char *, size_t, size_t, void *)) { return curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, f); }
static inline CURLcode mst_curl_getinfo_long(CURL *c, CURLINFO i, long *v) { return curl_easy_getinfo(c, i, v); }
// Added for mstunnel-agent: round-trip time in microseconds (CURLINFO_*_TIME_T).
static inline CURLcode mst_curl_getinfo_off_t(CURL *c, CURLINFO i, curl_off_t *v) { return curl_easy_getinfo(c, i, v); }
// Added for mstunnel-agent: in-memory PEM (CURLOPT_CAINFO_BLOB, ...); curl copies the bytes.
static inline CURLcode mst_curl_setopt_blob(CURL *c, CURLoption o, const void *data, size_t len) {
    struct curl_blob blob = { (void *)data, len, CURL_BLOB_COPY };
    return curl_easy_setopt(c, o, &blob);
}
// Added for mstunnel-agent: reset a string option to NULL (e.g. CURLOPT_CAPATH, so a pinned CA is the only trust).
static inline CURLcode mst_curl_setopt_null(CURL *c, CURLoption o) { return curl_easy_setopt(c, o, (char *)NULL); }
// Added for mstunnel-agent: request body size for CURLOPT_POSTFIELDSIZE_LARGE.
static inline CURLcode mst_curl_setopt_off_t(CURL *c, CURLoption o, curl_off_t v) { return curl_easy_setopt(c, o, v); }
#endif
