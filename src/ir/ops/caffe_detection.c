/* caffe_detection.c - caffe.DetectionOutput, SSD's last layer: decodes the location
 * predictions against the priors, runs greedy (adaptive) NMS per class and keeps the
 * keep_top_k best detections of each image, as rows [image, label, score, box]. */
#include <math.h>
#include <string.h>

#include "ir/ops/caffe_impl.h"

typedef struct det_plan {
    int64_t num, priors, classes, loc_classes, keep_top_k, top_k, background;
    int64_t code;
    bool share, var_in_target;
    float nms, eta, threshold;
} det_plan;

/* Product of the dims after the first; false on overflow. */
static bool per_image(const kiln_dims *s, int64_t *out)
{
    int64_t p = 1;
    for (int32_t d = 1; d < s->rank; d++)
        if (!kiln_mul_ok(p, s->d[d], &p)) return false;
    *out = p;
    return true;
}

static kiln_status det_attrs(const ir_node *n, det_plan *p)
{
    p->classes = ir_attr_int(n, "num_classes");
    int64_t share = ir_attr_int(n, "share_location"),
            vit = ir_attr_int(n, "variance_encoded_in_target");
    p->background = ir_attr_int(n, "background_label_id");
    p->code = ir_attr_int(n, "code_type");
    p->top_k = ir_attr_int(n, "top_k");
    p->keep_top_k = ir_attr_int(n, "keep_top_k");
    p->nms = ir_attr_float(n, "nms_threshold");
    p->eta = ir_attr_float(n, "eta");
    p->threshold = ir_attr_float(n, "confidence_threshold");
    if (p->classes < 1 || p->classes > INT32_MAX)
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH, "num_classes is %lld, expected 1 or more",
                             (long long)p->classes);
    if ((share != 0 && share != 1) || (vit != 0 && vit != 1))
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                             "share_location and variance_encoded_in_target must be 0 or 1, got "
                             "%lld, %lld",
                             (long long)share, (long long)vit);
    p->share = share != 0;
    p->var_in_target = vit != 0;
    p->loc_classes = p->share ? 1 : p->classes;
    if (p->code < CAFFE_CODE_CORNER || p->code > CAFFE_CODE_CORNER_SIZE)
        return ir_node_error(n, KILN_ERR_UNSUPPORTED,
                             "code_type is %lld, expected 1 (CORNER), 2 (CENTER_SIZE) or 3 "
                             "(CORNER_SIZE)",
                             (long long)p->code);
    if (!(p->nms >= 0.0f))
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH, "nms_threshold is %g, expected >= 0",
                             (double)p->nms);
    if (!(p->eta > 0.0f && p->eta <= 1.0f))
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH, "eta is %g, expected in (0, 1]",
                             (double)p->eta);
    if (isnan(p->threshold))
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH, "confidence_threshold is NaN");
    if (p->keep_top_k < 1)
        return ir_node_error(n, KILN_ERR_UNSUPPORTED,
                             "keep_top_k is %lld, expected 1 or more (kiln gives the output a "
                             "static size, keep_top_k rows per image)",
                             (long long)p->keep_top_k);
    return KILN_OK;
}

static kiln_status det_plan_make(const ir_node *n, const ir_tensor *in, det_plan *p)
{
    char a[KILN_DIMS_STR_MAX], b[KILN_DIMS_STR_MAX];
    static const char *const names[3] = {"loc", "conf", "prior"};
    KILN_TRY(det_attrs(n, p));
    for (int32_t i = 0; i < 3; i++)
        if (in[i].dtype != KILN_DTYPE_F32)
            return ir_node_error(n, KILN_ERR_UNSUPPORTED, "%s has dtype %s, expected f32", names[i],
                                 kiln_dtype_name(in[i].dtype));
    const kiln_dims *ls = &in[0].shape, *cs = &in[1].shape, *ps = &in[2].shape;
    /* [1, 2, priors x 4]: boxes, then variances (which may be left out when they are
     * encoded in the target). */
    if (ps->rank != 3 || ps->d[0] < 1 || ps->d[2] % 4 != 0 ||
        !(ps->d[1] == 2 || (ps->d[1] == 1 && p->var_in_target)))
        return ir_node_error(n, KILN_ERR_SHAPE, "prior is %s, expected [1, %s, priors x 4]",
                             kiln_dims_str(ps, a, sizeof a), p->var_in_target ? "1 or 2" : "2");
    p->priors = ps->d[2] / 4;
    if (ls->rank < 1 || cs->rank < 1 || ls->d[0] != cs->d[0])
        return ir_node_error(n, KILN_ERR_SHAPE, "loc %s and conf %s must share their first dim",
                             kiln_dims_str(ls, a, sizeof a), kiln_dims_str(cs, b, sizeof b));
    p->num = ls->d[0];
    int64_t lc = -1, cc = -1, want_l, want_c;
    if (!per_image(ls, &lc) || !per_image(cs, &cc) ||
        !kiln_mul_ok(p->priors, p->loc_classes * 4, &want_l) ||
        !kiln_mul_ok(p->priors, p->classes, &want_c) || lc != want_l || cc != want_c)
        return ir_node_error(n, KILN_ERR_SHAPE,
                             "loc %s and conf %s: expected %lld priors x %lld x 4 and %lld priors "
                             "x %lld classes per image",
                             kiln_dims_str(ls, a, sizeof a), kiln_dims_str(cs, b, sizeof b),
                             (long long)p->priors, (long long)p->loc_classes, (long long)p->priors,
                             (long long)p->classes);
    int64_t rows, total;
    if (!kiln_mul_ok(p->num, p->keep_top_k, &rows) || !kiln_mul_ok(rows, 7, &total) ||
        total > KILN_MAX_ELEMENTS)
        return ir_node_error(n, KILN_ERR_SHAPE, "%lld images x keep_top_k %lld rows is too many",
                             (long long)p->num, (long long)p->keep_top_k);
    return KILN_OK;
}

/* Caffe's DecodeBBox refuses priors without area for the size-relative codes; checked
 * here when the priors are known at build time. */
static kiln_status det_check_priors(const ir_node *n, const det_plan *p, const float *prior)
{
    if (p->code == CAFFE_CODE_CORNER) return KILN_OK;
    for (int64_t i = 0; i < p->priors; i++) {
        const float *b = prior + 4 * i;
        float w = b[2] - b[0], h = b[3] - b[1];
        if (!(w > 0.0f && h > 0.0f))
            return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                                 "prior %lld is %g x %g, expected a positive size for code_type "
                                 "%lld",
                                 (long long)i, (double)w, (double)h, (long long)p->code);
    }
    return KILN_OK;
}

kiln_status caffe_infer_detection_output(ir_infer *c)
{
    det_plan p;
    KILN_TRY(det_plan_make(c->node, c->in, &p));
    if (c->in[2].data) KILN_TRY(det_check_priors(c->node, &p, c->in[2].data));
    c->out[0].dtype = KILN_DTYPE_F32;
    c->out[0].shape = kiln_dims_make(4, (const int64_t[]){1, 1, p.num * p.keep_top_k, 7});
    return KILN_OK;
}

/* ---- decoding (float arithmetic, as Caffe's bbox_util.cpp) ---- */

/* `var` is NULL when the variances are encoded in the target. */
static void det_decode(const det_plan *p, const float *prior, const float *var, const float *l,
                       float *out)
{
    static const float unit[4] = {1.0f, 1.0f, 1.0f, 1.0f};
    const float *v = var ? var : unit;
    if (p->code == CAFFE_CODE_CORNER) {
        for (int32_t k = 0; k < 4; k++) out[k] = prior[k] + v[k] * l[k];
        return;
    }
    const float pw = prior[2] - prior[0], ph = prior[3] - prior[1];
    if (p->code == CAFFE_CODE_CORNER_SIZE) {
        out[0] = prior[0] + v[0] * l[0] * pw;
        out[1] = prior[1] + v[1] * l[1] * ph;
        out[2] = prior[2] + v[2] * l[2] * pw;
        out[3] = prior[3] + v[3] * l[3] * ph;
        return;
    }
    const float pcx = (prior[0] + prior[2]) / 2.0f, pcy = (prior[1] + prior[3]) / 2.0f;
    const float cx = v[0] * l[0] * pw + pcx, cy = v[1] * l[1] * ph + pcy;
    const float w = (float)(exp((double)(v[2] * l[2])) * pw);
    const float h = (float)(exp((double)(v[3] * l[3])) * ph);
    out[0] = (float)(cx - w / 2.);
    out[1] = (float)(cy - h / 2.);
    out[2] = (float)(cx + w / 2.);
    out[3] = (float)(cy + h / 2.);
}

/* Caffe's BBoxSize for normalized boxes: 0 for an inverted box. */
static float det_area(const float *b)
{
    if (b[2] < b[0] || b[3] < b[1]) return 0.0f;
    return (b[2] - b[0]) * (b[3] - b[1]);
}

static float max_f(float a, float b) { return a < b ? b : a; } /* std::max */
static float min_f(float a, float b) { return b < a ? b : a; } /* std::min */

/* Caffe's JaccardOverlap on normalized coordinates (no +1). */
static float det_jaccard(const float *a, const float *b)
{
    if (b[0] > a[2] || b[2] < a[0] || b[1] > a[3] || b[3] < a[1]) return 0.0f;
    float iw = min_f(a[2], b[2]) - max_f(a[0], b[0]);
    float ih = min_f(a[3], b[3]) - max_f(a[1], b[1]);
    if (!(iw > 0.0f && ih > 0.0f)) return 0.0f;
    float inter = iw * ih;
    return inter / (det_area(a) + det_area(b) - inter);
}

/* ---- candidates and the kept list ---- */

typedef struct det_cand {
    float score;
    int64_t prior;
} det_cand;

typedef struct det_hit {
    float score;
    int64_t label, prior;
} det_hit;

/* Higher score first, then lower prior index: Caffe's stable sort of the candidates
 * above the threshold, which it collects by prior index. */
static bool cand_before(const det_cand *a, const det_cand *b)
{
    return a->score > b->score || (a->score == b->score && a->prior < b->prior);
}

static void cand_sift(det_cand *c, int64_t root, int64_t len)
{
    for (;;) {
        int64_t kid = 2 * root + 1;
        if (kid >= len) return;
        if (kid + 1 < len && cand_before(&c[kid], &c[kid + 1])) kid++;
        if (!cand_before(&c[root], &c[kid])) return;
        det_cand t = c[root];
        c[root] = c[kid];
        c[kid] = t;
        root = kid;
    }
}

/* Heap sort into cand_before order; the order is total, so any sort gives this. */
static void cand_sort(det_cand *c, int64_t len)
{
    for (int64_t i = len / 2 - 1; i >= 0; i--) cand_sift(c, i, len);
    for (int64_t end = len - 1; end > 0; end--) {
        det_cand t = c[0];
        c[0] = c[end];
        c[end] = t;
        cand_sift(c, 0, end);
    }
}

/* Inserts into hits (sorted by score, earlier insertions first among equals, at most
 * cap long) and returns the new length. */
static int64_t hit_insert(det_hit *hits, int64_t len, int64_t cap, det_hit h)
{
    int64_t pos = len;
    while (pos > 0 && hits[pos - 1].score < h.score) pos--;
    if (pos >= cap) return len;
    int64_t last = len < cap ? len : cap - 1;
    memmove(&hits[pos + 1], &hits[pos], sizeof *hits * (size_t)(last - pos));
    hits[pos] = h;
    return last + 1;
}

/* Greedy NMS of one class's sorted candidates: keeps a candidate unless it overlaps a
 * kept one by more than the threshold, which eta < 1 lowers after each keep while above
 * 0.5. Kept candidates are compacted to the front; stops after `cap` (no later one of
 * this class can reach the image's best keep_top_k). Returns how many were kept. */
static int64_t det_nms(const det_plan *p, det_cand *cand, int64_t m, const float *boxes,
                       int64_t cap)
{
    float thr = p->nms;
    int64_t kept = 0;
    for (int64_t j = 0; j < m && kept < cap; j++) {
        const float *bj = boxes + 4 * cand[j].prior;
        bool keep = true;
        for (int64_t k = 0; k < kept && keep; k++)
            keep = det_jaccard(bj, boxes + 4 * cand[k].prior) <= thr;
        if (!keep) continue;
        cand[kept++] = cand[j];
        if (p->eta < 1.0f && thr > 0.5f) thr *= p->eta;
    }
    return kept;
}

/* Output rows, packed over images: [image, label, score, xmin, ymin, xmax, ymax] for
 * each kept detection, by score (ties: lower label, then NMS order), then rows
 * [-1, 0, 0, 0, 0, 0, 0] up to num x keep_top_k. Caffe and OpenCV return the valid rows
 * only; Caffe groups them by label, OpenCV sorts them by score as here. */
kiln_status caffe_eval_detection_output(const ir_node *n, const ir_tensor *in, int32_t n_in,
                                        ir_tensor *out, int32_t n_out)
{
    det_plan p;
    KILN_TRY(det_plan_make(n, in, &p));
    const float *loc = in[0].data, *conf = in[1].data, *prior = in[2].data;
    float *y = out[0].data;
    const int64_t rows = p.num * p.keep_top_k;
    int64_t done = 0;
    /* Scratch: decoded boxes of one image, one class's candidates, the kept list. */
    const int64_t n_box = p.priors * p.loc_classes;
    int64_t cap = p.keep_top_k;
    if (p.priors * p.classes < cap) cap = p.priors * p.classes;
    const size_t bytes = sizeof(float) * 4 * (size_t)n_box + sizeof(det_cand) * (size_t)p.priors +
                         sizeof(det_hit) * (size_t)cap;
    void *scratch = kiln_malloc(bytes ? bytes : 1);
    if (!scratch)
        return ir_node_error(n, KILN_ERR_OUT_OF_MEMORY, "no memory for %zu bytes of scratch",
                             bytes);
    float *boxes = scratch;
    det_cand *cand = (det_cand *)(boxes + 4 * n_box);
    det_hit *hits = (det_hit *)(cand + p.priors);
    for (int64_t i = 0; i < p.num; i++) {
        const float *li = loc + i * n_box * 4, *ci = conf + i * p.priors * p.classes;
        for (int64_t b = 0; b < p.priors; b++)
            for (int64_t l = 0; l < p.loc_classes; l++)
                det_decode(&p, prior + 4 * b, p.var_in_target ? NULL : prior + 4 * (p.priors + b),
                           li + 4 * (b * p.loc_classes + l), boxes + 4 * (l * p.priors + b));
        int64_t n_hits = 0;
        for (int64_t c = 0; c < p.classes; c++) {
            if (c == p.background) continue;
            int64_t m = 0;
            for (int64_t b = 0; b < p.priors; b++) {
                float s = ci[b * p.classes + c];
                if (s > p.threshold) cand[m++] = (det_cand){s, b};
            }
            cand_sort(cand, m);
            if (p.top_k >= 0 && p.top_k < m) m = p.top_k;
            const float *cb = boxes + 4 * (p.share ? 0 : c) * p.priors;
            int64_t kept = det_nms(&p, cand, m, cb, cap);
            for (int64_t k = 0; k < kept; k++)
                n_hits = hit_insert(hits, n_hits, cap, (det_hit){cand[k].score, c, cand[k].prior});
        }
        for (int64_t k = 0; k < n_hits; k++, done++) {
            float *row = y + 7 * done;
            const float *bx =
                boxes + 4 * ((p.share ? 0 : hits[k].label) * p.priors + hits[k].prior);
            row[0] = (float)i;
            row[1] = (float)hits[k].label;
            row[2] = hits[k].score;
            memcpy(row + 3, bx, 4 * sizeof(float));
        }
    }
    for (; done < rows; done++) {
        float *row = y + 7 * done;
        row[0] = -1.0f;
        for (int32_t k = 1; k < 7; k++) row[k] = 0.0f;
    }
    kiln_free(scratch);
    return KILN_OK;
}
