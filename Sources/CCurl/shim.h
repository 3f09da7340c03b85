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
#endif
