/*
 * sse_load - fast HTTP/1.1 + Server-Sent-Events load client (and trivial SSE
 * server to measure the client's own ceiling).  Linux, epoll, single thread,
 * no third-party libraries.
 *
 * Client:
 *   sse_load --port P [--host 127.0.0.1] [--path /invoke/burst] [--body JSON]
 *            [--connections C] [--requests R] [--keepalive] [--expect-events N]
 *            [--interval-ms I] [--ramp K] [--timeout SECONDS]
 *            [--accept text/event-stream]
 * Server:
 *   sse_load --serve --port P --events N [--event '{"type":"content","data":"x"}']
 * Self-test of the HTTP/chunked/SSE parser:
 *   sse_load --self-test
 *
 * Exactly one JSON line is printed on stdout by the client; diagnostics go to
 * stderr.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define RBUF_SIZE (256u * 1024u)     /* client read buffer (shared)          */
#define HL_CAP 1024u                 /* HTTP header / chunk-size line cap    */
#define LINE_LIMIT (64u * 1024u)     /* SSE partial line / event data cap    */
#define SAMPLE_LIMIT ((size_t)64 << 20) /* per-array samples, then reservoir */
#define GAP_LIMIT ((size_t)8 << 20)     /* timed gaps kept (16 bytes each) */
#define MAX_EVENTS 1024
#define SRV_CHUNK 16000u             /* server chunk size (not line aligned) */

/* HTTP response parser states */
enum { HS_STATUS, HS_HEADER, HS_BODY_CL, HS_CHUNK_SIZE, HS_CHUNK_DATA,
       HS_CHUNK_CRLF, HS_TRAILER, HS_BODY_EOF, HS_DONE, HS_BAD };
/* event types */
enum { T_NONE, T_OTHER, T_DONE, T_ERROR };
/* connection states */
enum { CS_IDLE, CS_CONNECTING, CS_WRITING, CS_READING };
/* result reasons */
enum { RS_OK, RS_STATUS, RS_NO_DONE, RS_WRONG_COUNT, RS_CONNECT, RS_RESET,
       RS_TIMEOUT, RS_TRUNCATED, RS_BAD, RS_ERROR_EVENT, RS_INTERRUPTED, RS_COUNT };
static const char *reason_name[RS_COUNT] = {
    "ok", "status", "no_done", "wrong_count", "connect_failed", "reset",
    "timeout", "truncated", "bad_response", "error_event", "interrupted"};

static void die(const char *msg)
{
    fprintf(stderr, "sse_load: %s\n", msg);
    exit(2);
}

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------------------ */
/* samples: float milliseconds stored as uint32 bit patterns (all >= 0, so  */
/* the bit patterns sort like the values)                                   */

typedef struct {
    uint32_t *v;
    size_t n, cap;
    uint64_t seen;
    float max;
} samples_t;

static uint64_t rng_s = 0x9E3779B97F4A7C15ull;
static uint64_t rng_next(void)
{
    uint64_t x = rng_s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_s = x;
}

static void samples_slow(samples_t *s, uint32_t b)
{
    if (s->n < SAMPLE_LIMIT) {
        size_t nc = s->cap ? s->cap * 2 : 4096;
        if (nc > SAMPLE_LIMIT)
            nc = SAMPLE_LIMIT;
        uint32_t *nv = realloc(s->v, nc * sizeof *nv);
        if (!nv)
            die("out of memory (samples)");
        s->v = nv;
        s->cap = nc;
        s->v[s->n++] = b;
        return;
    }
    /* reservoir sampling beyond SAMPLE_LIMIT samples */
    uint64_t j = rng_next() % s->seen;
    if (j < s->n)
        s->v[j] = b;
}

static inline void samples_push(samples_t *s, float x)
{
    if (!(x > 0.0f))
        x = 0.0f; /* also kills -0.0 and NaN */
    uint32_t b;
    memcpy(&b, &x, 4);
    s->seen++;
    if (x > s->max)
        s->max = x;
    if (s->n < s->cap) {
        s->v[s->n++] = b;
        return;
    }
    samples_slow(s, b);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void radix_sort_u32(uint32_t *a, size_t n)
{
    if (n < 2)
        return;
    uint32_t *t = malloc(n * sizeof *t);
    if (!t) {
        qsort(a, n, sizeof *a, cmp_u32);
        return;
    }
    static size_t cnt[3][2048];
    memset(cnt, 0, sizeof cnt);
    for (size_t i = 0; i < n; i++) {
        uint32_t v = a[i];
        cnt[0][v & 0x7ff]++;
        cnt[1][(v >> 11) & 0x7ff]++;
        cnt[2][v >> 22]++;
    }
    uint32_t *src = a, *dst = t;
    for (int p = 0; p < 3; p++) {
        size_t sum = 0;
        for (int b = 0; b < 2048; b++) {
            size_t c = cnt[p][b];
            cnt[p][b] = sum;
            sum += c;
        }
        int sh = p * 11;
        for (size_t i = 0; i < n; i++) {
            uint32_t v = src[i];
            dst[cnt[p][(v >> sh) & 0x7ff]++] = v;
        }
        uint32_t *tmp = src;
        src = dst;
        dst = tmp;
    }
    /* 3 passes: sorted data is in t */
    memcpy(a, src, n * sizeof *a);
    free(t);
}

static float bits_to_float(uint32_t b)
{
    float f;
    memcpy(&f, &b, 4);
    return f;
}

/* out: p50, p90, p99, max (ms); nearest-rank percentiles */
static void samples_pct(samples_t *s, double out[4])
{
    out[0] = out[1] = out[2] = out[3] = 0.0;
    if (!s->n)
        return;
    radix_sort_u32(s->v, s->n);
    static const double ps[3] = {0.50, 0.90, 0.99};
    for (int k = 0; k < 3; k++) {
        double r = ceil(ps[k] * (double)s->n);
        size_t idx = r < 1.0 ? 0 : (size_t)r - 1;
        if (idx >= s->n)
            idx = s->n - 1;
        out[k] = bits_to_float(s->v[idx]);
    }
    out[3] = s->max;
}

/* ------------------------------------------------------------------------ */
/* global configuration and statistics                                      */

static struct {
    /* config */
    const char *host, *path, *body, *accept, *event;
    int port, connections, keepalive, ramp, serve, self_test;
    long long requests;
    long long expect_events;
    int has_expect, has_interval;
    double interval_ms, timeout_s;
    long long srv_events;
    /* stats */
    uint64_t ok, failed, events, heartbeats, bytes, finished, retries;
    uint64_t status_cnt[1000];
    uint64_t reason_cnt[RS_COUNT];
    int reason_diag[RS_COUNT];
    samples_t ttfe, lag;
    uint64_t t_first, t_last_end;
    /* self-test hook: record event types */
    int *test_types;
    int test_ntypes, test_cap;
} G;

/* Makes room for one more element in a growing array of `n` elements; false once it holds
   GAP_LIMIT (the caller then leaves the rest out). */
static int reserve_one(void **items, size_t n, size_t *cap, size_t size, const char *what)
{
    if (n < *cap)
        return 1;
    if (*cap >= GAP_LIMIT)
        return 0;
    size_t nc = *cap ? *cap * 2 : 4096;
    void *grown = realloc(*items, nc * size);
    if (!grown)
        die(what);
    *items = grown;
    *cap = nc;
    return 1;
}

/* With --interval-ms: every lag with when its gap began, so the report can give the lag of the
   events that came once every stream had its first event (after the connection storm). */
typedef struct {
    uint64_t t;
    float gap;
} timed_gap_t;
static timed_gap_t *g_gaps;
static size_t g_ngaps, g_capgaps;
static uint64_t g_last_first; /* when the last stream got its first event */
/* When each stream got its first event: how many started within the same 10 ms (they tick
   together from then on). */
static uint64_t *g_firsts;
static size_t g_nfirsts, g_capfirsts;

static void first_push(uint64_t t)
{
    if (reserve_one((void **)&g_firsts, g_nfirsts, &g_capfirsts, sizeof *g_firsts, "out of memory (first events)"))
        g_firsts[g_nfirsts++] = t;
}

static void timed_gap_push(uint64_t t, float gap)
{
    if (reserve_one((void **)&g_gaps, g_ngaps, &g_capgaps, sizeof *g_gaps, "out of memory (gaps)"))
        g_gaps[g_ngaps++] = (timed_gap_t){t, gap};
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The most first events within any 10 ms. */
static size_t busiest_first_events(void)
{
    qsort(g_firsts, g_nfirsts, sizeof *g_firsts, cmp_u64);
    size_t most = 0, from = 0;
    for (size_t i = 0; i < g_nfirsts; i++) {
        while (g_firsts[i] - g_firsts[from] >= 10000000ull)
            from++;
        if (i - from + 1 > most)
            most = i - from + 1;
    }
    return most;
}

static volatile sig_atomic_t g_stop;
static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            perror("sse_load: setrlimit(RLIMIT_NOFILE)");
    }
}

static rlim_t nofile_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 1024;
    return rl.rlim_cur;
}

/* ------------------------------------------------------------------------ */
/* connection + parsers                                                     */

typedef struct {
    int fd;
    uint32_t evmask;
    uint8_t cs, holding, reused, retried;
    uint8_t skip_lf, data_present, got_first, last_type;
    uint8_t http10, hdr_close, hdr_ka, chunked;
    int hs, status;
    int64_t clen;
    uint64_t rem;
    size_t woff;
    uint64_t t_written, t_last, resp_bytes, nevents;
    uint32_t hl_len, lb_len, lb_cap, ev_len, ev_cap;
    char *lb, *ev;
    char hl[HL_CAP];
} conn_t;

static void buf_add(char **b, uint32_t *len, uint32_t *cap, const char *s, size_t n)
{
    if (!n || *len >= LINE_LIMIT)
        return;
    if (n > LINE_LIMIT - *len)
        n = LINE_LIMIT - *len;
    if (*len + n > *cap) {
        uint32_t nc = *cap ? *cap : 256;
        while (nc < *len + n)
            nc *= 2;
        if (nc > LINE_LIMIT)
            nc = LINE_LIMIT;
        char *nb = realloc(*b, nc);
        if (!nb)
            die("out of memory (line buffer)");
        *b = nb;
        *cap = nc;
    }
    memcpy(*b + *len, s, n);
    *len += (uint32_t)n;
}

static void conn_reset_response(conn_t *c)
{
    c->hs = HS_STATUS;
    c->status = 0;
    c->http10 = c->hdr_close = c->hdr_ka = c->chunked = 0;
    c->clen = -1;
    c->rem = 0;
    c->hl_len = 0;
    c->skip_lf = c->data_present = c->got_first = 0;
    c->last_type = T_NONE;
    c->nevents = 0;
    c->lb_len = c->ev_len = 0;
    c->resp_bytes = 0;
}

/* Find the end of a JSON string starting after its opening quote at s[i].
 * Returns index of closing quote or n if unterminated. */
static size_t json_str_end(const char *s, size_t i, size_t n)
{
    while (i < n) {
        const char *q = memchr(s + i, '"', n - i);
        if (!q)
            return n;
        size_t k = (size_t)(q - s), bs = 0;
        while (k - bs > i && s[k - bs - 1] == '\\')
            bs++;
        if (!(bs & 1))
            return k;
        i = k + 1;
    }
    return n;
}

static inline int is_ws(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

/* type of the top-level "type" key of a JSON object */
static int json_top_type(const char *s, size_t n)
{
    int depth = 0;
    size_t i = 0;
    while (i < n) {
        char ch = s[i];
        if (ch == '"') {
            size_t st = i + 1, e = json_str_end(s, st, n);
            if (e >= n)
                return T_NONE;
            i = e + 1;
            if (depth == 1 && e - st == 4 && memcmp(s + st, "type", 4) == 0) {
                size_t j = i;
                while (j < n && is_ws(s[j]))
                    j++;
                if (j < n && s[j] == ':') {
                    j++;
                    while (j < n && is_ws(s[j]))
                        j++;
                    if (j >= n || s[j] != '"')
                        return T_OTHER;
                    size_t vs = j + 1, ve = json_str_end(s, vs, n);
                    if (ve >= n)
                        return T_OTHER;
                    if (ve - vs == 4 && memcmp(s + vs, "done", 4) == 0)
                        return T_DONE;
                    if (ve - vs == 5 && memcmp(s + vs, "error", 5) == 0)
                        return T_ERROR;
                    return T_OTHER;
                }
            }
            continue;
        }
        if (ch == '{' || ch == '[')
            depth++;
        else if (ch == '}' || ch == ']') {
            if (--depth <= 0)
                return T_NONE;
        }
        i++;
    }
    return T_NONE;
}

static void sse_dispatch(conn_t *c, uint64_t t)
{
    if (!c->data_present) {
        c->ev_len = 0;
        return;
    }
    c->data_present = 0;
    int ty = json_top_type(c->ev, c->ev_len);
    c->last_type = (uint8_t)ty;
    c->ev_len = 0;
    c->nevents++;
    if (G.test_types && G.test_ntypes < G.test_cap)
        G.test_types[G.test_ntypes++] = ty;
    if (!c->got_first) {
        c->got_first = 1;
        double d = t > c->t_written ? (double)(t - c->t_written) / 1e6 : 0.0;
        samples_push(&G.ttfe, (float)d);
        if (t > g_last_first)
            g_last_first = t;
        if (G.has_interval)
            first_push(t);
    } else {
        double gap = t > c->t_last ? (double)(t - c->t_last) / 1e6 : 0.0;
        if (G.has_interval) {
            gap -= G.interval_ms;
            if (gap < 0)
                gap = 0;
        }
        samples_push(&G.lag, (float)gap);
        if (G.has_interval)
            timed_gap_push(c->t_last, (float)gap);
    }
    c->t_last = t;
}

static void sse_line(conn_t *c, const char *s, size_t n, uint64_t t)
{
    if (n == 0) {
        sse_dispatch(c, t);
        return;
    }
    if (s[0] == ':') {
        G.heartbeats++;
        return;
    }
    if (n >= 4 && memcmp(s, "data", 4) == 0 && (n == 4 || s[4] == ':')) {
        const char *v = s + 4;
        size_t vn = n - 4;
        if (vn) {
            v++;
            vn--;
            if (vn && *v == ' ') {
                v++;
                vn--;
            }
        }
        if (c->data_present)
            buf_add(&c->ev, &c->ev_len, &c->ev_cap, "\n", 1);
        buf_add(&c->ev, &c->ev_len, &c->ev_cap, v, vn);
        c->data_present = 1;
    }
    /* event:, id:, retry:, unknown fields: ignored */
}

/* feed de-chunked body bytes to the SSE parser */
static void sse_feed(conn_t *c, const char *p, size_t n, uint64_t t)
{
    const char *end = p + n;
    if (c->skip_lf && p < end) {
        c->skip_lf = 0;
        if (*p == '\n')
            p++;
    }
    const char *nl = NULL, *cr = NULL;
    while (p < end) {
        if (!nl || nl < p) {
            nl = memchr(p, '\n', (size_t)(end - p));
            if (!nl)
                nl = end;
        }
        if (!cr || cr < p) {
            cr = memchr(p, '\r', (size_t)(end - p));
            if (!cr)
                cr = end;
        }
        const char *eol = nl < cr ? nl : cr;
        if (eol == end) {
            buf_add(&c->lb, &c->lb_len, &c->lb_cap, p, (size_t)(end - p));
            return;
        }
        if (c->lb_len) {
            buf_add(&c->lb, &c->lb_len, &c->lb_cap, p, (size_t)(eol - p));
            sse_line(c, c->lb, c->lb_len, t);
            c->lb_len = 0;
        } else {
            sse_line(c, p, (size_t)(eol - p), t);
        }
        p = eol + 1;
        if (eol == cr) {
            if (p == end) {
                c->skip_lf = 1;
                return;
            }
            if (*p == '\n')
                p++;
        }
    }
}

static int ci_contains(const char *s, size_t n, const char *needle)
{
    size_t m = strlen(needle);
    for (size_t i = 0; i + m <= n; i++)
        if (strncasecmp(s + i, needle, m) == 0)
            return 1;
    return 0;
}

static void end_headers(conn_t *c)
{
    if (c->status >= 100 && c->status < 200 && c->status != 101) {
        /* interim response: a real one follows */
        c->hdr_close = c->hdr_ka = c->chunked = 0;
        c->clen = -1;
        c->hs = HS_STATUS;
        return;
    }
    if (c->status == 204 || c->status == 304 || c->status == 101) {
        c->hs = HS_DONE;
        return;
    }
    if (c->chunked)
        c->hs = HS_CHUNK_SIZE;
    else if (c->clen >= 0) {
        if (c->clen == 0)
            c->hs = HS_DONE;
        else {
            c->rem = (uint64_t)c->clen;
            c->hs = HS_BODY_CL;
        }
    } else {
        c->hs = HS_BODY_EOF;
    }
}

static void http_line(conn_t *c, const char *s, size_t n)
{
    switch (c->hs) {
    case HS_STATUS:
        if (n == 0)
            return; /* tolerate stray CRLF */
        if (n < 12 || memcmp(s, "HTTP/1.", 7) != 0 || s[8] != ' ' ||
            !isdigit((unsigned char)s[9]) || !isdigit((unsigned char)s[10]) ||
            !isdigit((unsigned char)s[11])) {
            c->hs = HS_BAD;
            return;
        }
        c->http10 = (s[7] == '0');
        c->status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
        c->hs = HS_HEADER;
        return;
    case HS_HEADER: {
        if (n == 0) {
            end_headers(c);
            return;
        }
        const char *colon = memchr(s, ':', n);
        if (!colon)
            return;
        size_t nl = (size_t)(colon - s);
        while (nl && (s[nl - 1] == ' ' || s[nl - 1] == '\t'))
            nl--;
        const char *v = colon + 1;
        size_t vn = n - (size_t)(v - s);
        while (vn && (*v == ' ' || *v == '\t')) {
            v++;
            vn--;
        }
        while (vn && (v[vn - 1] == ' ' || v[vn - 1] == '\t'))
            vn--;
        if (nl == 14 && strncasecmp(s, "content-length", 14) == 0) {
            int64_t x = 0;
            size_t k = 0;
            for (; k < vn && isdigit((unsigned char)v[k]); k++) {
                if (x > (INT64_MAX - 9) / 10) {
                    c->hs = HS_BAD;
                    return;
                }
                x = x * 10 + (v[k] - '0');
            }
            if (k == 0) {
                c->hs = HS_BAD;
                return;
            }
            c->clen = x;
        } else if (nl == 17 && strncasecmp(s, "transfer-encoding", 17) == 0) {
            if (ci_contains(v, vn, "chunked"))
                c->chunked = 1;
        } else if (nl == 10 && strncasecmp(s, "connection", 10) == 0) {
            if (ci_contains(v, vn, "close"))
                c->hdr_close = 1;
            if (ci_contains(v, vn, "keep-alive"))
                c->hdr_ka = 1;
        }
        return;
    }
    case HS_CHUNK_SIZE: {
        size_t k = 0;
        while (k < n && (s[k] == ' ' || s[k] == '\t'))
            k++;
        uint64_t x = 0;
        size_t digits = 0;
        for (; k < n; k++) {
            int d;
            char ch = s[k];
            if (ch >= '0' && ch <= '9')
                d = ch - '0';
            else if (ch >= 'a' && ch <= 'f')
                d = ch - 'a' + 10;
            else if (ch >= 'A' && ch <= 'F')
                d = ch - 'A' + 10;
            else
                break; /* ';' extension or whitespace: ignored */
            if (++digits > 15) {
                c->hs = HS_BAD;
                return;
            }
            x = x * 16 + (uint64_t)d;
        }
        if (!digits) {
            c->hs = HS_BAD;
            return;
        }
        if (x == 0)
            c->hs = HS_TRAILER;
        else {
            c->rem = x;
            c->hs = HS_CHUNK_DATA;
        }
        return;
    }
    case HS_CHUNK_CRLF:
        c->hs = n == 0 ? HS_CHUNK_SIZE : HS_BAD;
        return;
    case HS_TRAILER:
        if (n == 0)
            c->hs = HS_DONE;
        return;
    default:
        return;
    }
}

/* Feed raw response bytes. Returns bytes consumed (stops at response end). */
static size_t http_feed(conn_t *c, const char *buf, size_t n, uint64_t t)
{
    size_t i = 0;
    while (i < n) {
        switch (c->hs) {
        case HS_BODY_CL:
        case HS_CHUNK_DATA: {
            size_t take = n - i;
            if (take > c->rem)
                take = (size_t)c->rem;
            if (c->status == 200)
                sse_feed(c, buf + i, take, t);
            i += take;
            c->rem -= take;
            if (!c->rem)
                c->hs = c->hs == HS_BODY_CL ? HS_DONE : HS_CHUNK_CRLF;
            break;
        }
        case HS_BODY_EOF:
            if (c->status == 200)
                sse_feed(c, buf + i, n - i, t);
            return n;
        case HS_DONE:
        case HS_BAD:
            return i;
        default: { /* line-oriented states */
            const char *s = buf + i;
            const char *nl = memchr(s, '\n', n - i);
            size_t take = nl ? (size_t)(nl - s) : n - i;
            if (c->hl_len < HL_CAP) {
                size_t k = take;
                if (k > HL_CAP - c->hl_len)
                    k = HL_CAP - c->hl_len;
                memcpy(c->hl + c->hl_len, s, k);
                c->hl_len += (uint32_t)k;
            }
            if (!nl)
                return n;
            i += take + 1;
            size_t L = c->hl_len;
            if (L && c->hl[L - 1] == '\r')
                L--;
            c->hl_len = 0;
            http_line(c, c->hl, L);
            break;
        }
        }
    }
    return i;
}

/* ------------------------------------------------------------------------ */
/* client                                                                   */

static conn_t *conns;
static int nslots;
static int *idle_stack;
static int idle_n;
static uint64_t next_req, total_req;
static char *reqbuf;
static size_t reqlen;
static struct sockaddr_storage peer;
static socklen_t peerlen;
static int ep = -1;
static char *rbuf;

static void diag(int reason, int err)
{
    if (G.reason_diag[reason]++)
        return;
    fprintf(stderr, "sse_load: first %s: %s\n", reason_name[reason],
            err ? strerror(err) : "-");
}

static int evaluate(conn_t *c, int complete)
{
    if (c->status != 200)
        return RS_STATUS;
    if (c->last_type != T_DONE) {
        if (c->last_type == T_ERROR)
            G.reason_cnt[RS_ERROR_EVENT]++;
        return RS_NO_DONE;
    }
    if (!complete)
        return RS_TRUNCATED;
    if (G.has_expect && c->nevents != (uint64_t)G.expect_events)
        return RS_WRONG_COUNT;
    return RS_OK;
}

static void record_result(conn_t *c, int reason, uint64_t t)
{
    G.finished++;
    c->holding = 0;
    G.t_last_end = t;
    if (reason == RS_OK) {
        G.ok++;
        G.events += c->nevents;
        return;
    }
    G.failed++;
    if (reason == RS_STATUS) {
        int s = c->status;
        if (s < 0 || s > 999)
            s = 0;
        G.status_cnt[s]++;
    } else {
        G.reason_cnt[reason]++;
    }
}

static void close_conn(conn_t *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->cs = CS_IDLE;
    c->evmask = 0;
}

static void push_idle(int i)
{
    conn_t *c = &conns[i];
    if (c->holding || next_req < total_req)
        idle_stack[idle_n++] = i;
}

static void set_mask(conn_t *c, uint32_t m)
{
    if (c->evmask == m)
        return;
    struct epoll_event e = {.events = m, .data.u64 = 0};
    e.data.u32 = (uint32_t)(c - conns);
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e) != 0)
        perror("sse_load: epoll_ctl MOD");
    c->evmask = m;
}

static void fail_close(int i, int reason)
{
    conn_t *c = &conns[i];
    record_result(c, reason, now_ns());
    close_conn(c);
    push_idle(i);
}

/* keep-alive connection closed by the peer before any response byte: retry
 * the request once on a fresh connection (like common HTTP clients) */
static void fail_or_retry(int i, int reason, int err)
{
    conn_t *c = &conns[i];
    if (c->reused && c->resp_bytes == 0 && !c->retried) {
        G.retries++;
        close_conn(c);
        c->retried = 1;
        push_idle(i);
        return;
    }
    diag(reason, err);
    fail_close(i, reason);
}

static void start_slot(int i, uint64_t now)
{
    conn_t *c = &conns[i];
    if (!c->holding) {
        if (next_req >= total_req)
            return;
        next_req++;
        c->holding = 1;
        c->retried = 0;
    }
    c->reused = 0;
    conn_reset_response(c);
    if (!G.t_first)
        G.t_first = now;
    int fd = socket(peer.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        diag(RS_CONNECT, errno);
        fail_close(i, RS_CONNECT);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&peer, peerlen) != 0 && errno != EINPROGRESS) {
        diag(RS_CONNECT, errno);
        close(fd);
        fail_close(i, RS_CONNECT);
        return;
    }
    c->fd = fd;
    c->cs = CS_CONNECTING;
    struct epoll_event e = {.events = EPOLLOUT, .data.u64 = 0};
    e.data.u32 = (uint32_t)i;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) != 0) {
        diag(RS_CONNECT, errno);
        fail_close(i, RS_CONNECT);
        return;
    }
    c->evmask = EPOLLOUT;
}

static void do_write(int i)
{
    conn_t *c = &conns[i];
    /* The clock starts before the request goes out: taken after send(), it missed the whole
     * answer whenever the scheduler ran the woken server before this client got its CPU back
     * (a 0.014 ms time to first event from a Python server on a busy machine). */
    if (c->woff == 0)
        c->t_written = now_ns();
    while (c->woff < reqlen) {
        ssize_t w = send(c->fd, reqbuf + c->woff, reqlen - c->woff, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                set_mask(c, EPOLLOUT);
                return;
            }
            fail_or_retry(i, RS_RESET, errno);
            return;
        }
        c->woff += (size_t)w;
    }
    c->cs = CS_READING;
    set_mask(c, EPOLLIN);
}

static void on_writable(int i)
{
    conn_t *c = &conns[i];
    if (c->cs == CS_CONNECTING) {
        int err = 0;
        socklen_t l = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l) != 0)
            err = errno;
        if (err) {
            diag(RS_CONNECT, err);
            fail_close(i, RS_CONNECT);
            return;
        }
        c->cs = CS_WRITING;
        c->woff = 0;
    }
    do_write(i);
}

static void complete_response(int i, uint64_t t, int force_close)
{
    conn_t *c = &conns[i];
    int reason = evaluate(c, 1);
    record_result(c, reason, t);
    int ka = G.keepalive && !force_close && !c->hdr_close &&
             !(c->http10 && !c->hdr_ka) && c->hs == HS_DONE;
    if (ka && next_req < total_req && !g_stop) {
        next_req++;
        c->holding = 1;
        c->retried = 0;
        c->reused = 1;
        conn_reset_response(c);
        c->woff = 0;
        c->cs = CS_WRITING;
        do_write(i);
        return;
    }
    close_conn(c);
    push_idle(i);
}

static void on_eof(int i)
{
    conn_t *c = &conns[i];
    uint64_t t = now_ns();
    if (c->hs == HS_BODY_EOF) { /* read-until-close framing: normal end */
        c->hs = HS_DONE;
        complete_response(i, t, 1);
        return;
    }
    if (c->hs == HS_STATUS && c->resp_bytes == 0) {
        fail_or_retry(i, RS_RESET, ECONNRESET);
        return;
    }
    if (c->hs == HS_STATUS || c->hs == HS_HEADER) {
        diag(RS_RESET, ECONNRESET);
        fail_close(i, RS_RESET);
        return;
    }
    /* body framing incomplete */
    int reason = evaluate(c, 0);
    if (reason == RS_TRUNCATED)
        diag(RS_TRUNCATED, 0);
    record_result(c, reason, t);
    close_conn(c);
    push_idle(i);
}

static void on_readable(int i)
{
    conn_t *c = &conns[i];
    for (int iter = 0; iter < 8; iter++) {
        ssize_t r = recv(c->fd, rbuf, RBUF_SIZE, 0);
        if (r > 0) {
            uint64_t t = now_ns();
            G.bytes += (uint64_t)r;
            c->resp_bytes += (uint64_t)r;
            size_t used = http_feed(c, rbuf, (size_t)r, t);
            if (c->hs == HS_DONE) {
                /* unexpected extra bytes after the response: don't reuse */
                complete_response(i, t, used < (size_t)r);
                return;
            }
            if (c->hs == HS_BAD) {
                diag(RS_BAD, 0);
                fail_close(i, RS_BAD);
                return;
            }
            if ((size_t)r < RBUF_SIZE)
                return;
            continue;
        }
        if (r == 0) {
            on_eof(i);
            return;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        fail_or_retry(i, RS_RESET, errno);
        return;
    }
}

static void resolve_peer(void)
{
    memset(&peer, 0, sizeof peer);
    struct sockaddr_in *a4 = (struct sockaddr_in *)&peer;
    if (inet_pton(AF_INET, G.host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)G.port);
        peerlen = sizeof *a4;
        return;
    }
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", G.port);
    int rc = getaddrinfo(G.host, ps, &hints, &res);
    if (rc != 0 || !res) {
        fprintf(stderr, "sse_load: cannot resolve %s: %s\n", G.host, gai_strerror(rc));
        exit(2);
    }
    memcpy(&peer, res->ai_addr, res->ai_addrlen);
    peerlen = res->ai_addrlen;
    freeaddrinfo(res);
}

static void build_request(void)
{
    size_t bl = strlen(G.body);
    char hosthdr[512];
    if (strchr(G.host, ':'))
        snprintf(hosthdr, sizeof hosthdr, "[%s]:%d", G.host, G.port);
    else
        snprintf(hosthdr, sizeof hosthdr, "%s:%d", G.host, G.port);
    size_t cap = strlen(G.path) + strlen(hosthdr) + strlen(G.accept) + bl + 256;
    reqbuf = malloc(cap);
    if (!reqbuf)
        die("out of memory");
    int n = snprintf(reqbuf, cap,
                     "POST %s HTTP/1.1\r\n"
                     "Host: %s\r\n"
                     "Content-Type: application/json\r\n"
                     "Accept: %s\r\n"
                     "Content-Length: %zu\r\n"
                     "\r\n",
                     G.path, hosthdr, G.accept, bl);
    memcpy(reqbuf + n, G.body, bl);
    reqlen = (size_t)n + bl;
}

static void print_report(uint64_t tend)
{
    uint64_t last = G.t_last_end ? G.t_last_end : tend;
    double elapsed = (G.t_first && last > G.t_first) ? (double)(last - G.t_first) / 1e9 : 0.0;
    double eps = elapsed > 0 ? (double)G.events / elapsed : 0.0;
    double rps = elapsed > 0 ? (double)G.ok / elapsed : 0.0;
    double tt[4], lg[4];
    samples_pct(&G.ttfe, tt);
    samples_pct(&G.lag, lg);
    /* The gaps that began once every stream had its first event (0 of them without --interval-ms). */
    samples_t settled = {0};
    for (size_t i = 0; i < g_ngaps; i++)
        if (g_gaps[i].t >= g_last_first)
            samples_push(&settled, g_gaps[i].gap);
    double ls[4];
    samples_pct(&settled, ls);

    printf("{\"requests_ok\":%llu,\"requests_failed\":%llu,\"errors\":{",
           (unsigned long long)G.ok, (unsigned long long)G.failed);
    int first = 1;
    for (int s = 0; s < 1000; s++) {
        if (!G.status_cnt[s])
            continue;
        printf("%s\"status_%d\":%llu", first ? "" : ",", s,
               (unsigned long long)G.status_cnt[s]);
        first = 0;
    }
    for (int r = RS_NO_DONE; r < RS_COUNT; r++) {
        if (!G.reason_cnt[r])
            continue;
        printf("%s\"%s\":%llu", first ? "" : ",", reason_name[r],
               (unsigned long long)G.reason_cnt[r]);
        first = 0;
    }
    printf("},\"events\":%llu,\"heartbeats\":%llu,\"elapsed_s\":%.6f,"
           "\"events_per_s\":%.1f,\"requests_per_s\":%.1f,"
           "\"ttfe_ms\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"max\":%.3f},"
           "\"lag_ms\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"max\":%.3f},"
           "\"lag_after_all_started_ms\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"max\":%.3f,"
           "\"count\":%llu},\"most_first_events_in_10ms\":%zu,"
           "\"bytes\":%llu}\n",
           (unsigned long long)G.events, (unsigned long long)G.heartbeats, elapsed,
           eps, rps, tt[0], tt[1], tt[2], tt[3], lg[0], lg[1], lg[2], lg[3], ls[0], ls[1], ls[2],
           ls[3], (unsigned long long)settled.seen, busiest_first_events(), (unsigned long long)G.bytes);
    free(settled.v);
    fflush(stdout);
}

static int run_client(void)
{
    if (G.port <= 0 || G.port > 65535)
        die("--port is required (1..65535)");
    if (G.connections <= 0)
        die("--connections must be > 0");
    if (G.requests < 0)
        die("--requests must be >= 0");
    rlim_t lim = nofile_limit();
    if ((rlim_t)G.connections + 16 > lim) {
        fprintf(stderr, "sse_load: --connections %d exceeds RLIMIT_NOFILE %llu (minus 16)\n",
                G.connections, (unsigned long long)lim);
        return 2;
    }
    resolve_peer();
    build_request();
    total_req = (uint64_t)G.requests;
    nslots = (uint64_t)G.connections < total_req ? G.connections : (int)total_req;
    conns = calloc((size_t)(nslots ? nslots : 1), sizeof *conns);
    idle_stack = malloc((size_t)(nslots ? nslots : 1) * sizeof *idle_stack);
    rbuf = malloc(RBUF_SIZE);
    if (!conns || !idle_stack || !rbuf)
        die("out of memory");
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1 failed");
    for (int i = 0; i < nslots; i++) {
        conns[i].fd = -1;
        conn_reset_response(&conns[i]);
    }
    for (int i = nslots - 1; i >= 0; i--)
        idle_stack[idle_n++] = i;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    uint64_t t0 = now_ns();
    uint64_t deadline = t0 + (uint64_t)(G.timeout_s * 1e9);
    int64_t tokens = G.ramp;
    uint64_t last_ms = t0 / 1000000;
    struct epoll_event evs[MAX_EVENTS];
    int timed_out = 0;

    while (G.finished < total_req) {
        if (g_stop)
            break;
        uint64_t now = now_ns();
        if (now >= deadline) {
            timed_out = 1;
            break;
        }
        if (G.ramp) {
            uint64_t ms = now / 1000000;
            if (ms != last_ms) {
                tokens += (int64_t)(ms - last_ms) * G.ramp;
                if (tokens > G.ramp)
                    tokens = G.ramp;
                last_ms = ms;
            }
        }
        while (idle_n && (!G.ramp || tokens > 0)) {
            int i = idle_stack[--idle_n];
            if (!conns[i].holding && next_req >= total_req)
                continue;
            start_slot(i, now);
            if (G.ramp)
                tokens--;
        }
        int to;
        if (idle_n) {
            to = 1;
        } else {
            uint64_t left = deadline - now;
            uint64_t ms = left / 1000000 + 1;
            to = ms > 1000 ? 1000 : (int)ms;
        }
        if (G.finished >= total_req)
            break;
        int n = epoll_wait(ep, evs, MAX_EVENTS, to);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait failed");
        }
        for (int k = 0; k < n; k++) {
            int i = (int)evs[k].data.u32;
            conn_t *c = &conns[i];
            uint32_t e = evs[k].events;
            if (c->fd < 0)
                continue;
            if (c->cs == CS_CONNECTING || c->cs == CS_WRITING) {
                if (e & (EPOLLOUT | EPOLLERR | EPOLLHUP))
                    on_writable(i);
            } else if (c->cs == CS_READING) {
                on_readable(i);
            }
        }
    }
    uint64_t tend = now_ns();
    if (G.finished < total_req) {
        uint64_t left = total_req - G.finished;
        int r = timed_out ? RS_TIMEOUT : RS_INTERRUPTED;
        G.reason_cnt[r] += left;
        G.failed += left;
        fprintf(stderr, "sse_load: %s: %llu requests unfinished\n", reason_name[r],
                (unsigned long long)left);
    }
    if (G.retries)
        fprintf(stderr, "sse_load: %llu requests retried after keep-alive close\n",
                (unsigned long long)G.retries);
    print_report(tend);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* server                                                                   */

typedef struct {
    int fd;
    uint32_t inlen;
    uint8_t in_body, close_after, want_out;
    uint64_t body_skip, pending;
    size_t out_off;
    char in[16384];
} sconn_t;

static char *srv_resp;
static size_t srv_len;
static sconn_t **stab;
static size_t stab_n;

static void appendf(char **b, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (*len + n > *cap) {
        size_t nc = *cap ? *cap : 4096;
        while (nc < *len + n)
            nc *= 2;
        char *nb = realloc(*b, nc);
        if (!nb)
            die("out of memory (server body)");
        *b = nb;
        *cap = nc;
    }
    memcpy(*b + *len, s, n);
    *len += n;
}

static void srv_build(void)
{
    char *p = NULL;
    size_t pl = 0, pc = 0;
    const char *st = "data: {\"type\":\"start\"}\n\n";
    appendf(&p, &pl, &pc, st, strlen(st));
    size_t el = strlen(G.event);
    for (long long k = 0; k < G.srv_events; k++) {
        appendf(&p, &pl, &pc, "data: ", 6);
        appendf(&p, &pl, &pc, G.event, el);
        appendf(&p, &pl, &pc, "\n\n", 2);
    }
    const char *dn = "data: {\"type\":\"done\"}\n\n";
    appendf(&p, &pl, &pc, dn, strlen(dn));

    char *r = NULL;
    size_t rl = 0, rc = 0;
    const char *hdr = "HTTP/1.1 200 OK\r\n"
                      "Content-Type: text/event-stream\r\n"
                      "Cache-Control: no-cache\r\n"
                      "Connection: keep-alive\r\n"
                      "Transfer-Encoding: chunked\r\n"
                      "\r\n";
    appendf(&r, &rl, &rc, hdr, strlen(hdr));
    for (size_t off = 0; off < pl; off += SRV_CHUNK) {
        size_t n = pl - off < SRV_CHUNK ? pl - off : SRV_CHUNK;
        char sz[32];
        int m = snprintf(sz, sizeof sz, "%zx\r\n", n);
        appendf(&r, &rl, &rc, sz, (size_t)m);
        appendf(&r, &rl, &rc, p + off, n);
        appendf(&r, &rl, &rc, "\r\n", 2);
    }
    appendf(&r, &rl, &rc, "0\r\n\r\n", 5);
    free(p);
    srv_resp = r;
    srv_len = rl;
}

static void srv_close(sconn_t *sc)
{
    close(sc->fd);
    if ((size_t)sc->fd < stab_n)
        stab[sc->fd] = NULL;
    free(sc);
}

static void srv_setmask(sconn_t *sc, int out)
{
    if (sc->want_out == out)
        return;
    struct epoll_event e = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.u64 = 0};
    e.data.fd = sc->fd;
    epoll_ctl(ep, EPOLL_CTL_MOD, sc->fd, &e);
    sc->want_out = (uint8_t)out;
}

/* returns 0 if the connection was closed */
static int srv_flush(sconn_t *sc)
{
    while (sc->pending) {
        ssize_t w = send(sc->fd, srv_resp + sc->out_off, srv_len - sc->out_off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                srv_setmask(sc, 1);
                return 1;
            }
            srv_close(sc);
            return 0;
        }
        sc->out_off += (size_t)w;
        if (sc->out_off == srv_len) {
            sc->out_off = 0;
            sc->pending--;
        }
    }
    srv_setmask(sc, 0);
    if (sc->close_after) {
        srv_close(sc);
        return 0;
    }
    return 1;
}

static void srv_parse(sconn_t *sc)
{
    size_t off = 0;
    while (off < sc->inlen) {
        if (sc->in_body) {
            size_t take = sc->inlen - off;
            if (take > sc->body_skip)
                take = (size_t)sc->body_skip;
            off += take;
            sc->body_skip -= take;
            if (!sc->body_skip) {
                sc->in_body = 0;
                sc->pending++;
            }
            continue;
        }
        char *h = sc->in + off;
        size_t avail = sc->inlen - off;
        char *e = memmem(h, avail, "\r\n\r\n", 4);
        if (!e)
            break;
        size_t hlen = (size_t)(e - h) + 4;
        uint64_t cl = 0;
        int is10 = 0, ka = 0;
        char *ls = memchr(h, '\n', hlen);
        if (ls && (size_t)(ls - h) >= 9 && memcmp(ls - 9, "HTTP/1.0", 8) == 0)
            is10 = 1;
        while (ls && ls < e) {
            char *line = ls + 1;
            char *le = memchr(line, '\n', (size_t)(e + 2 - line));
            if (!le)
                break;
            size_t ll = (size_t)(le - line);
            if (ll > 15 && strncasecmp(line, "content-length:", 15) == 0)
                cl = strtoull(line + 15, NULL, 10);
            else if (ll > 11 && strncasecmp(line, "connection:", 11) == 0) {
                if (ci_contains(line + 11, ll - 11, "close"))
                    sc->close_after = 1;
                if (ci_contains(line + 11, ll - 11, "keep-alive"))
                    ka = 1;
            }
            ls = le;
        }
        if (is10 && !ka)
            sc->close_after = 1;
        off += hlen;
        if (cl) {
            sc->in_body = 1;
            sc->body_skip = cl;
        } else {
            sc->pending++;
        }
    }
    if (off) {
        memmove(sc->in, sc->in + off, sc->inlen - off);
        sc->inlen -= (uint32_t)off;
    }
}

static void srv_read(sconn_t *sc)
{
    if (sc->inlen == sizeof sc->in) { /* header larger than buffer */
        srv_close(sc);
        return;
    }
    ssize_t r = recv(sc->fd, sc->in + sc->inlen, sizeof sc->in - sc->inlen, 0);
    if (r == 0) {
        srv_close(sc);
        return;
    }
    if (r < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            srv_close(sc);
        return;
    }
    sc->inlen += (uint32_t)r;
    srv_parse(sc);
    if (sc->pending && !sc->want_out)
        srv_flush(sc);
}

static int run_server(void)
{
    if (G.port < 0 || G.port > 65535)
        die("--port must be 0..65535");
    if (G.srv_events < 0)
        die("--events must be >= 0");
    srv_build();
    stab_n = (size_t)nofile_limit() + 1;
    stab = calloc(stab_n, sizeof *stab);
    if (!stab)
        die("out of memory");
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0)
        die("socket failed");
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)G.port);
    if (inet_pton(AF_INET, G.host, &a.sin_addr) != 1)
        die("server --host must be an IPv4 address");
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) != 0) {
        perror("sse_load: bind");
        return 2;
    }
    if (listen(lfd, 65535) != 0) {
        perror("sse_load: listen");
        return 2;
    }
    socklen_t al = sizeof a;
    getsockname(lfd, (struct sockaddr *)&a, &al);
    printf("port %d\n", ntohs(a.sin_port));
    fflush(stdout);
    fprintf(stderr, "sse_load: serving %zu-byte responses (%lld events) on %s:%d\n",
            srv_len, G.srv_events, G.host, ntohs(a.sin_port));

    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1 failed");
    struct epoll_event le = {.events = EPOLLIN, .data.u64 = 0};
    le.data.fd = lfd;
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &le);
    struct epoll_event evs[MAX_EVENTS];
    while (!g_stop) {
        int n = epoll_wait(ep, evs, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait failed");
        }
        for (int k = 0; k < n; k++) {
            int fd = evs[k].data.fd;
            uint32_t e = evs[k].events;
            if (fd == lfd) {
                for (;;) {
                    int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (cfd < 0) {
                        if (errno == EMFILE || errno == ENFILE)
                            fprintf(stderr, "sse_load: accept: %s\n", strerror(errno));
                        break;
                    }
                    if ((size_t)cfd >= stab_n) {
                        close(cfd);
                        continue;
                    }
                    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    sconn_t *sc = calloc(1, sizeof *sc);
                    if (!sc) {
                        close(cfd);
                        continue;
                    }
                    sc->fd = cfd;
                    stab[cfd] = sc;
                    struct epoll_event ce = {.events = EPOLLIN, .data.u64 = 0};
                    ce.data.fd = cfd;
                    epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &ce);
                }
                continue;
            }
            sconn_t *sc = (size_t)fd < stab_n ? stab[fd] : NULL;
            if (!sc)
                continue;
            if (e & EPOLLERR) {
                srv_close(sc);
                continue;
            }
            if ((e & EPOLLOUT) && sc->pending) {
                if (!srv_flush(sc))
                    continue;
            }
            if (e & (EPOLLIN | EPOLLHUP))
                srv_read(sc);
        }
    }
    fprintf(stderr, "sse_load: server stopping\n");
    return 0;
}

/* ------------------------------------------------------------------------ */
/* self-test                                                                */

static const char st_sse[] =
    ":ok\n\n"                                                         /* hb 1 */
    "data: {\"type\":\"start\"}\n\n"                                  /* ev 1 */
    "event: message\r\n"
    "data: {\"type\": \"content\", \"data\": \"a\\\"type\\\":\\\"done\\\"\"}\r\n\r\n" /* ev 2 */
    "data: {\"type\"  :  \"content\",\r"
    "data:\"x\":1}\r\r"                                               /* ev 3 (CR) */
    ":heartbeat\r\n"                                                  /* hb 2 */
    "data: {\"type\":\r\ndata: \"content\"}\r\n\r\n"                    /* ev 3b (CRLF, 2 lines) */
    "id: 7\nretry: 10\n\n"                                            /* no event */
    "data:{\"nested\":{\"type\":\"done\"},\"type\":\"content\"}\n\n"  /* ev 4 */
    "data\n\n"                                                        /* ev 5 (empty) */
    "data: {\"type\": \"error\"}\r\n\r\n"                             /* ev 6 */
    ": ping\n"                                                        /* hb 3 */
    "data: {\"type\": \"done\"}\n"
    "\n";                                                             /* ev 7 */
static const int st_types[8] = {T_OTHER, T_OTHER, T_OTHER, T_OTHER, T_OTHER, T_NONE, T_ERROR, T_DONE};

typedef struct {
    int status, hs, types[16], ntypes;
    uint64_t nevents, heartbeats;
    size_t consumed;
    int last_type;
} st_result_t;

static size_t st_split_next(int mode, size_t off, size_t len, size_t split)
{
    switch (mode) {
    case 0:
        return len; /* one piece */
    case 1:
        return off + 1; /* byte by byte */
    case 2: {       /* random pieces */
        size_t k = 1 + (size_t)(rng_next() % 37);
        return off + k > len ? len : off + k;
    }
    default: /* two pieces at 'split' */
        return off < split ? split : len;
    }
}

static st_result_t st_run(const char *resp, size_t len, int mode, size_t split)
{
    static conn_t c;
    static int types[64];
    st_result_t r;
    memset(&r, 0, sizeof r);
    free(c.lb);
    free(c.ev);
    memset(&c, 0, sizeof c);
    c.fd = -1;
    conn_reset_response(&c);
    G.heartbeats = 0;
    G.test_types = types;
    G.test_ntypes = 0;
    G.test_cap = 64;
    size_t off = 0, consumed = 0;
    uint64_t t = 1000;
    while (off < len && c.hs != HS_DONE && c.hs != HS_BAD) {
        size_t nx = st_split_next(mode, off, len, split);
        if (nx <= off)
            nx = off + 1;
        /* copy piece to a private buffer so overreads would be caught by ASan */
        size_t pn = nx - off;
        char *piece = malloc(pn);
        memcpy(piece, resp + off, pn);
        consumed += http_feed(&c, piece, pn, t += 1000);
        free(piece);
        off = nx;
    }
    r.status = c.status;
    r.hs = c.hs;
    r.nevents = c.nevents;
    r.heartbeats = G.heartbeats;
    r.consumed = consumed;
    r.last_type = c.last_type;
    r.ntypes = G.test_ntypes < 16 ? G.test_ntypes : 16;
    memcpy(r.types, types, (size_t)r.ntypes * sizeof(int));
    G.test_types = NULL;
    return r;
}

static int st_fail;
static void st_check(int cond, const char *what, const char *name, int mode, size_t split)
{
    if (!cond) {
        st_fail++;
        if (st_fail < 20)
            fprintf(stderr, "self-test FAIL [%s mode=%d split=%zu]: %s\n", name, mode, split, what);
    }
}

static void st_expect(const char *name, const char *resp, size_t len, size_t expect_consumed,
                      int status, int final_hs, uint64_t nev, uint64_t nhb, const int *types)
{
    for (int mode = 0; mode < 4; mode++) {
        size_t nsplit = mode == 3 ? len + 1 : (mode == 2 ? 50 : 1);
        for (size_t sp = 0; sp < nsplit; sp++) {
            st_result_t r = st_run(resp, len, mode, sp);
            st_check(r.status == status, "status", name, mode, sp);
            st_check(r.hs == final_hs, "final parser state", name, mode, sp);
            st_check(r.nevents == nev, "event count", name, mode, sp);
            st_check(r.heartbeats == nhb, "heartbeat count", name, mode, sp);
            if (final_hs == HS_DONE)
                st_check(r.consumed == expect_consumed, "bytes consumed", name, mode, sp);
            if (types) {
                int ok = r.ntypes == (int)nev;
                for (int k = 0; ok && k < r.ntypes; k++)
                    ok = r.types[k] == types[k];
                st_check(ok, "event types", name, mode, sp);
            }
        }
    }
}

static char *st_chunkify(const char *hdr, const char *body, size_t bl, const size_t *sizes,
                         int nsizes, const char *tail, size_t *outlen)
{
    char *o = NULL;
    size_t ol = 0, oc = 0;
    appendf(&o, &ol, &oc, hdr, strlen(hdr));
    size_t off = 0;
    int k = 0;
    while (off < bl) {
        size_t n = sizes[k % nsizes];
        if (n > bl - off)
            n = bl - off;
        char sz[64];
        int m;
        if (k % 3 == 1)
            m = snprintf(sz, sizeof sz, "%zX;ext=\"a;b\"\r\n", n);
        else if (k % 3 == 2)
            m = snprintf(sz, sizeof sz, "%04zx\r\n", n);
        else
            m = snprintf(sz, sizeof sz, "%zx\r\n", n);
        appendf(&o, &ol, &oc, sz, (size_t)m);
        appendf(&o, &ol, &oc, body + off, n);
        appendf(&o, &ol, &oc, "\r\n", 2);
        off += n;
        k++;
    }
    appendf(&o, &ol, &oc, tail, strlen(tail));
    *outlen = ol;
    return o;
}

static int run_self_test(void)
{
    /* JSON type extraction */
    struct {
        const char *s;
        int t;
    } jt[] = {
        {"{\"type\":\"done\"}", T_DONE},
        {"{\"type\": \"done\"}", T_DONE},
        {"{ \"type\" :\t\"error\" , \"x\":1}", T_ERROR},
        {"{\"a\":\"\\\"type\\\":\\\"done\\\"\",\"type\":\"content\"}", T_OTHER},
        {"{\"a\":{\"type\":\"done\"},\"type\":\"x\"}", T_OTHER},
        {"{\"a\":{\"type\":\"done\"}}", T_NONE},
        {"{\"type\":\"do\\\"ne\"}", T_OTHER},
        {"{\"a\":\"\\\\\",\"type\":\"done\"}", T_DONE},
        {"[\"type\",\"done\"]", T_NONE},
        {"hello", T_NONE},
        {"", T_NONE},
        {"{\"type\":5}", T_OTHER},
    };
    for (size_t k = 0; k < sizeof jt / sizeof jt[0]; k++) {
        int t = json_top_type(jt[k].s, strlen(jt[k].s));
        if (t != jt[k].t) {
            fprintf(stderr, "self-test FAIL json_top_type(%s) = %d, want %d\n", jt[k].s, t, jt[k].t);
            st_fail++;
        }
    }

    size_t bl = strlen(st_sse);
    const char *hdr_chunked = "HTTP/1.1 100 Continue\r\n\r\n"
                              "HTTP/1.1 200 OK\r\n"
                              "content-type: text/event-stream\r\n"
                              "X-Other: a: b\r\n"
                              "TRANSFER-ENCODING:   chunked  \r\n"
                              "Connection: keep-alive\r\n"
                              "\r\n";
    const char *pipelined = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    /* chunk sizes chosen so that boundaries split lines, CRLFs of the SSE
     * text and land right after CRs */
    size_t sizes_a[] = {7, 1, 13, 2, 5, 64, 3};
    size_t sizes_b[] = {1};
    size_t sizes_c[] = {100000};
    size_t *sizes[] = {sizes_a, sizes_b, sizes_c};
    int nsz[] = {7, 1, 1};
    const char *names[] = {"chunked-mixed", "chunked-1byte", "chunked-single"};
    for (int v = 0; v < 3; v++) {
        for (int withtrailer = 0; withtrailer < 2; withtrailer++) {
            const char *tail = withtrailer ? "0\r\nX-Trailer: 1\r\nX-T2: z\r\n\r\n" : "0\r\n\r\n";
            size_t rl;
            char *resp = st_chunkify(hdr_chunked, st_sse, bl, sizes[v], nsz[v], tail, &rl);
            /* append another response: parser must stop at the first one's end */
            size_t pl = strlen(pipelined);
            char *full = malloc(rl + pl);
            memcpy(full, resp, rl);
            memcpy(full + rl, pipelined, pl);
            st_expect(names[v], full, rl + pl, rl, 200, HS_DONE, 8, 3, st_types);
            free(full);
            free(resp);
        }
    }

    /* Content-Length framing */
    {
        char *o = NULL;
        size_t ol = 0, oc = 0;
        char h[256];
        int m = snprintf(h, sizeof h,
                         "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                         "content-LENGTH: %zu\r\n\r\n", bl);
        appendf(&o, &ol, &oc, h, (size_t)m);
        appendf(&o, &ol, &oc, st_sse, bl);
        st_expect("content-length", o, ol, ol, 200, HS_DONE, 8, 3, st_types);
        free(o);
    }
    /* read-until-close framing (HTTP/1.0), trailing incomplete event ignored */
    {
        char *o = NULL;
        size_t ol = 0, oc = 0;
        const char *h = "HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\n\r\n";
        appendf(&o, &ol, &oc, h, strlen(h));
        appendf(&o, &ol, &oc, st_sse, bl);
        const char *partial = "data: {\"type\":\"partial\"}\n";
        appendf(&o, &ol, &oc, partial, strlen(partial));
        st_expect("until-close", o, ol, ol, 200, HS_BODY_EOF, 8, 3, st_types);
        free(o);
    }
    /* error status with a body: events are not counted */
    {
        const char *b503 = "data: {\"type\":\"done\"}\n\n:x\n\n";
        char r503[256];
        int m = snprintf(r503, sizeof r503,
                         "HTTP/1.1 503 Service Unavailable\r\nContent-Length: %zu\r\n"
                         "Connection: close\r\n\r\n%s", strlen(b503), b503);
        st_expect("503", r503, (size_t)m, (size_t)m, 503, HS_DONE, 0, 0, NULL);
    }
    /* malformed chunk framing must be detected */
    {
        const char *bad = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                          "5\r\ndata:XX\r\n0\r\n\r\n";
        st_expect("bad-chunk", bad, strlen(bad), 0, 200, HS_BAD, 0, 0, NULL);
    }
    /* server mode body parses as expected */
    {
        const char *saved = G.event;
        long long saved_n = G.srv_events;
        G.event = "{\"type\":\"content\",\"data\":\"x\"}";
        G.srv_events = 5000;
        srv_build();
        st_result_t r = st_run(srv_resp, srv_len, 0, 0);
        st_check(r.hs == HS_DONE && r.status == 200 && r.nevents == 5002 && r.last_type == T_DONE &&
                     r.consumed == srv_len,
                 "server body", "server-body", 0, 0);
        r = st_run(srv_resp, srv_len, 2, 0);
        st_check(r.hs == HS_DONE && r.nevents == 5002 && r.last_type == T_DONE,
                 "server body", "server-body", 2, 0);
        free(srv_resp);
        srv_resp = NULL;
        G.event = saved;
        G.srv_events = saved_n;
    }

    if (st_fail) {
        fprintf(stderr, "self-test: %d check(s) FAILED\n", st_fail);
        return 1;
    }
    fprintf(stderr, "self-test: all checks passed\n");
    return 0;
}

/* ------------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f,
            "usage:\n"
            "  sse_load --port P [--host 127.0.0.1] [--path /] [--body JSON]\n"
            "           [--connections C] [--requests R] [--keepalive] [--expect-events N]\n"
            "           [--interval-ms I] [--ramp K] [--timeout SECONDS] [--accept TYPE]\n"
            "  sse_load --serve --port P [--host 127.0.0.1] --events N [--event JSON]\n"
            "  sse_load --self-test\n");
}

static long long parse_ll(const char *s, const char *opt)
{
    char *e;
    errno = 0;
    long long v = strtoll(s, &e, 10);
    if (errno || e == s || *e) {
        fprintf(stderr, "sse_load: bad value for --%s: %s\n", opt, s);
        exit(2);
    }
    return v;
}

static double parse_d(const char *s, const char *opt)
{
    char *e;
    errno = 0;
    double v = strtod(s, &e);
    if (errno || e == s || *e || v < 0) {
        fprintf(stderr, "sse_load: bad value for --%s: %s\n", opt, s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    G.host = "127.0.0.1";
    G.path = "/";
    G.body = "";
    G.accept = "text/event-stream";
    G.event = "{\"type\":\"content\",\"data\":\"x\"}";
    G.port = -1;
    G.connections = 1;
    G.requests = -1;
    G.timeout_s = 120;
    G.srv_events = -1;

    enum { OPT_PORT = 256, OPT_HOST, OPT_PATH, OPT_BODY, OPT_CONN, OPT_REQ, OPT_KA, OPT_EXPECT, OPT_INTERVAL,
           OPT_RAMP, OPT_TIMEOUT, OPT_ACCEPT, OPT_SERVE, OPT_EVENTS, OPT_EVENT, OPT_SELFTEST, OPT_HELP };
    static const struct option opts[] = {
        {"port", required_argument, 0, OPT_PORT},
        {"host", required_argument, 0, OPT_HOST},
        {"path", required_argument, 0, OPT_PATH},
        {"body", required_argument, 0, OPT_BODY},
        {"connections", required_argument, 0, OPT_CONN},
        {"requests", required_argument, 0, OPT_REQ},
        {"keepalive", no_argument, 0, OPT_KA},
        {"expect-events", required_argument, 0, OPT_EXPECT},
        {"interval-ms", required_argument, 0, OPT_INTERVAL},
        {"ramp", required_argument, 0, OPT_RAMP},
        {"timeout", required_argument, 0, OPT_TIMEOUT},
        {"accept", required_argument, 0, OPT_ACCEPT},
        {"serve", no_argument, 0, OPT_SERVE},
        {"events", required_argument, 0, OPT_EVENTS},
        {"event", required_argument, 0, OPT_EVENT},
        {"self-test", no_argument, 0, OPT_SELFTEST},
        {"help", no_argument, 0, OPT_HELP},
        {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case OPT_PORT: G.port = (int)parse_ll(optarg, "port"); break;
        case OPT_HOST: G.host = optarg; break;
        case OPT_PATH: G.path = optarg; break;
        case OPT_BODY: G.body = optarg; break;
        case OPT_CONN: G.connections = (int)parse_ll(optarg, "connections"); break;
        case OPT_REQ: G.requests = parse_ll(optarg, "requests"); break;
        case OPT_KA: G.keepalive = 1; break;
        case OPT_EXPECT:
            G.expect_events = parse_ll(optarg, "expect-events");
            G.has_expect = 1;
            break;
        case OPT_INTERVAL:
            G.interval_ms = parse_d(optarg, "interval-ms");
            G.has_interval = 1;
            break;
        case OPT_RAMP: G.ramp = (int)parse_ll(optarg, "ramp"); break;
        case OPT_TIMEOUT: G.timeout_s = parse_d(optarg, "timeout"); break;
        case OPT_ACCEPT: G.accept = optarg; break;
        case OPT_SERVE: G.serve = 1; break;
        case OPT_EVENTS: G.srv_events = parse_ll(optarg, "events"); break;
        case OPT_EVENT: G.event = optarg; break;
        case OPT_SELFTEST: G.self_test = 1; break;
        case OPT_HELP: usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }
    if (G.self_test)
        return run_self_test();
    raise_nofile();
    if (G.serve) {
        if (G.port < 0)
            die("--port is required (0 = any)");
        if (G.srv_events < 0)
            G.srv_events = 0;
        return run_server();
    }
    if (G.requests < 0)
        G.requests = G.connections;
    if (G.ramp < 0)
        die("--ramp must be >= 0");
    return run_client();
}
