/* caffe_priorbox.c - caffe.PriorBox, SSD's prior boxes: per feature-map cell and
 * min_size, the min box, the sqrt(min * max) box and the aspect-ratio boxes, normalized
 * by the image size, then the variances. Reads only input shapes (IR_OP_SHAPE_ONLY). */
#include <math.h>

#include "ir/ops/caffe_impl.h"

/* Distinct aspect ratios one layer may have (SSD uses at most five). */
#define PRIOR_MAX_AR 512
/* Caffe keeps sizes and image dims in int. */
#define PRIOR_MAX_INT 2147483647.0

typedef struct prior_plan {
    int64_t layer_h, layer_w, num_priors, count; /* count: boxes x 4 (half the output) */
    double img_h, img_w;
    float step_h, step_w, offset;
    bool clip;
    int32_t n_min, n_ar, n_var;
    const float *min, *max; /* max is NULL without max sizes */
    float ar[PRIOR_MAX_AR];
    float var[4];
} prior_plan;

static kiln_status prior_sizes(const ir_node *n, prior_plan *p)
{
    int32_t n_max = 0;
    p->min = ir_attr_floats(n, "min_size", &p->n_min);
    p->max = ir_attr_floats(n, "max_size", &n_max);
    if (p->n_min < 1)
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH, "expected at least one min_size, got none");
    if (n_max != 0 && n_max != p->n_min)
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                             "expected no max_size or one per min_size (%d), got %d", (int)p->n_min,
                             (int)n_max);
    for (int32_t i = 0; i < p->n_min; i++) {
        if (!(p->min[i] > 0.0f && p->min[i] <= PRIOR_MAX_INT))
            return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                                 "min_size[%d] is %g, expected a positive size below 2^31", (int)i,
                                 (double)p->min[i]);
        if (n_max && !(p->max[i] > p->min[i] && p->max[i] <= PRIOR_MAX_INT))
            return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                                 "max_size[%d] is %g, expected above min_size %g and below 2^31",
                                 (int)i, (double)p->max[i], (double)p->min[i]);
    }
    if (n_max == 0) p->max = NULL;
    return KILN_OK;
}

/* Caffe's list: 1, then each new ratio (not within 1e-6 of one already listed) and,
 * with flip, its inverse. Ratio 1 is the min box itself, so only the others are kept
 * here, in list order. */
static kiln_status prior_aspect_ratios(const ir_node *n, prior_plan *p)
{
    float list[PRIOR_MAX_AR + 1];
    int32_t len = 0, cnt = 0;
    const float *ar = ir_attr_floats(n, "aspect_ratio", &cnt);
    const bool flip = ir_attr_int(n, "flip") != 0;
    list[len++] = 1.0f;
    for (int32_t i = 0; i < cnt; i++) {
        if (!(ar[i] > 0.0f && isfinite(ar[i])))
            return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                                 "aspect_ratio[%d] is %g, expected a positive number", (int)i,
                                 (double)ar[i]);
        bool seen = false;
        for (int32_t j = 0; j < len && !seen; j++) seen = fabsf(ar[i] - list[j]) < 1e-6;
        if (seen) continue;
        if (len + 2 > PRIOR_MAX_AR)
            return ir_node_error(n, KILN_ERR_UNSUPPORTED, "expected at most %d aspect ratios",
                                 PRIOR_MAX_AR / 2);
        list[len++] = ar[i];
        if (flip) list[len++] = (float)(1.0 / ar[i]);
    }
    /* Caffe's loop skips ratios within 1e-6 of 1 while counting every listed one (an
     * inverse can land there); counting only the boxes made keeps the output filled. */
    p->n_ar = 0;
    for (int32_t j = 0; j < len; j++)
        if (!(fabs(list[j] - 1.0) < 1e-6)) p->ar[p->n_ar++] = list[j];
    return KILN_OK;
}

static kiln_status prior_variance(const ir_node *n, prior_plan *p)
{
    int32_t cnt = 0;
    const float *v = ir_attr_floats(n, "variance", &cnt);
    if (cnt != 0 && cnt != 1 && cnt != 4)
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                             "expected 0, 1 or 4 variance values, got %d", (int)cnt);
    p->n_var = cnt ? cnt : 1;
    p->var[0] = 0.1f; /* Caffe's default */
    for (int32_t i = 0; i < cnt; i++) {
        if (!(v[i] > 0.0f && isfinite(v[i])))
            return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                                 "variance[%d] is %g, expected a positive number", (int)i,
                                 (double)v[i]);
        p->var[i] = v[i];
    }
    return KILN_OK;
}

/* img_h/img_w (both) or img_size override the image input's dims; step_h/step_w (both)
 * or step override image / feature map. A value of 0 means "not given", as Caffe's
 * has_*() (which also refuses a non-positive given value). */
static kiln_status prior_geometry(const ir_node *n, const ir_tensor *img, prior_plan *p)
{
    int64_t isz = ir_attr_int(n, "img_size"), ih = ir_attr_int(n, "img_h"),
            iw = ir_attr_int(n, "img_w");
    if (ih != 0 || iw != 0) {
        if (isz != 0)
            return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                                 "expected img_size or img_h/img_w, got both");
    } else
        ih = iw = isz;
    if (ih < 0 || iw < 0 || ih > PRIOR_MAX_INT || iw > PRIOR_MAX_INT || (ih == 0) != (iw == 0))
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                             "image size is %lld x %lld, expected both positive (below 2^31)",
                             (long long)ih, (long long)iw);
    if (ih == 0) {
        ih = img->shape.d[2];
        iw = img->shape.d[3];
        if (ih < 1 || iw < 1 || ih > PRIOR_MAX_INT || iw > PRIOR_MAX_INT)
            return ir_node_error(n, KILN_ERR_SHAPE,
                                 "image input is %lld x %lld, expected a positive size below 2^31",
                                 (long long)ih, (long long)iw);
    }
    p->img_h = (double)ih;
    p->img_w = (double)iw;
    float st = ir_attr_float(n, "step"), sh = ir_attr_float(n, "step_h"),
          sw = ir_attr_float(n, "step_w");
    if (sh != 0.0f || sw != 0.0f) {
        if (st != 0.0f)
            return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                                 "expected step or step_h/step_w, got both");
    } else
        sh = sw = st;
    if (!(sh >= 0.0f && sw >= 0.0f && isfinite(sh) && isfinite(sw)) || (sh == 0.0f) != (sw == 0.0f))
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                             "step is %g x %g, expected both positive and finite", (double)sh,
                             (double)sw);
    if (sh == 0.0f) { /* Caffe: float(image size) / feature map size */
        sh = (float)ih / (float)p->layer_h;
        sw = (float)iw / (float)p->layer_w;
    }
    p->step_h = sh;
    p->step_w = sw;
    p->offset = ir_attr_float(n, "offset");
    if (!isfinite(p->offset))
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH, "offset is %g, expected a finite number",
                             (double)p->offset);
    return KILN_OK;
}

static kiln_status prior_plan_make(const ir_node *n, const ir_tensor *in, prior_plan *p)
{
    char a[KILN_DIMS_STR_MAX], b[KILN_DIMS_STR_MAX];
    const kiln_dims *fs = &in[0].shape, *is = &in[1].shape;
    if (fs->rank != 4 || is->rank != 4)
        return ir_node_error(n, KILN_ERR_SHAPE,
                             "expected a 4-D feature map and a 4-D image, got %s and %s",
                             kiln_dims_str(fs, a, sizeof a), kiln_dims_str(is, b, sizeof b));
    p->layer_h = fs->d[2];
    p->layer_w = fs->d[3];
    if (p->layer_h < 1 || p->layer_w < 1)
        return ir_node_error(n, KILN_ERR_SHAPE, "feature map %s has no cells",
                             kiln_dims_str(fs, a, sizeof a));
    int64_t flip = ir_attr_int(n, "flip"), clip = ir_attr_int(n, "clip");
    if ((flip != 0 && flip != 1) || (clip != 0 && clip != 1))
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                             "flip and clip must be 0 or 1, got %lld, %lld", (long long)flip,
                             (long long)clip);
    p->clip = clip != 0;
    KILN_TRY(prior_sizes(n, p));
    KILN_TRY(prior_aspect_ratios(n, p));
    KILN_TRY(prior_variance(n, p));
    KILN_TRY(prior_geometry(n, &in[1], p));
    p->num_priors = (int64_t)p->n_min * (1 + (p->max ? 1 : 0) + p->n_ar);
    int64_t cells, boxes;
    if (!kiln_mul_ok(p->layer_h, p->layer_w, &cells) ||
        !kiln_mul_ok(cells, p->num_priors, &boxes) || !kiln_mul_ok(boxes, 8, &p->count) ||
        p->count > KILN_MAX_ELEMENTS)
        return ir_node_error(n, KILN_ERR_SHAPE, "%s cells x %lld priors is too many boxes",
                             kiln_dims_str(fs, a, sizeof a), (long long)p->num_priors);
    p->count = boxes * 4;
    return KILN_OK;
}

kiln_status caffe_infer_prior_box(ir_infer *c)
{
    prior_plan p;
    KILN_TRY(prior_plan_make(c->node, c->in, &p));
    c->out[0].dtype = KILN_DTYPE_F32;
    c->out[0].shape = kiln_dims_make(3, (const int64_t[]){1, 2, p.count});
    return KILN_OK;
}

/* One box's corners, divided by the image size in double as Caffe's `/ 2.` makes it. */
static float *prior_emit(float *y, float cx, float cy, float bw, float bh, const prior_plan *p)
{
    *y++ = (float)((cx - bw / 2.) / p->img_w);
    *y++ = (float)((cy - bh / 2.) / p->img_h);
    *y++ = (float)((cx + bw / 2.) / p->img_w);
    *y++ = (float)((cy + bh / 2.) / p->img_h);
    return y;
}

kiln_status caffe_eval_prior_box(const ir_node *n, const ir_tensor *in, int32_t n_in,
                                 ir_tensor *out, int32_t n_out)
{
    prior_plan p;
    KILN_TRY(prior_plan_make(n, in, &p));
    float *y = out[0].data, *box = y;
    for (int64_t h = 0; h < p.layer_h; h++)
        for (int64_t w = 0; w < p.layer_w; w++) {
            const float cx = ((float)w + p.offset) * p.step_w;
            const float cy = ((float)h + p.offset) * p.step_h;
            for (int32_t s = 0; s < p.n_min; s++) {
                /* Caffe truncates the sizes to int (SSD512's 35.84 is 35). */
                const int32_t mn = (int32_t)p.min[s];
                box = prior_emit(box, cx, cy, (float)mn, (float)mn, &p);
                if (p.max) {
                    const int32_t mx = (int32_t)p.max[s];
                    const float side = (float)sqrt((double)mn * (double)mx);
                    box = prior_emit(box, cx, cy, side, side, &p);
                }
                for (int32_t r = 0; r < p.n_ar; r++) {
                    const float q = sqrtf(p.ar[r]);
                    box = prior_emit(box, cx, cy, (float)mn * q, (float)mn / q, &p);
                }
            }
        }
    if (p.clip)
        for (int64_t i = 0; i < p.count; i++) {
            float v = y[i] < 0.0f ? 0.0f : y[i];
            y[i] = v > 1.0f ? 1.0f : v;
        }
    for (int64_t i = 0; i < p.count; i++) y[p.count + i] = p.var[p.n_var == 1 ? 0 : i % 4];
    return KILN_OK;
}
