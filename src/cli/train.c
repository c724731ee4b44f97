/* jem train: softmax or JEM training with a progress bar on stderr. */
#include "cli/cli.h"
#include "io/json.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile int stop_flag;
static void on_signal(int sig) { (void)sig; stop_flag = 1; }

typedef struct { int tty; int json; } prog_ctx;

static void fmt_time(double s, char *buf, size_t n)
{
    if (s < 0) { snprintf(buf, n, "?"); return; }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
}

static void progress(void *ud, const jem_progress *p)
{
    prog_ctx *pc = ud;
    char el[32], eta[32];
    fmt_time(p->elapsed, el, sizeof el);
    fmt_time(p->eta, eta, sizeof eta);
    if (p->event == JEM_EV_ROLLBACK) {
        fprintf(stderr, "%swarning: %s\n", pc->tty ? "\r\033[K" : "", p->msg);
        return;
    }
    if (p->event == JEM_EV_CKPT) return;
    char bar[32] = "";
    if (p->iter_total > 0) {
        int w = 20, f = (int)(w * (double)p->iter / p->iter_total);
        if (f > w) f = w;
        bar[0] = '[';
        for (int i = 0; i < w; i++) bar[1 + i] = i < f ? '#' : '.';
        bar[w + 1] = ']';
        bar[w + 2] = ' ';
        bar[w + 3] = 0;
    }
    char extra[160] = "";
    if (p->e_data != 0 || p->e_sample != 0)
        snprintf(extra, sizeof extra, " E(data) %.3g E(sample) %.3g", p->e_data, p->e_sample);
    fprintf(stderr, "%s%sit %lld ep %d loss %.4f acc %.3f%s %.0f img/s lr %.2g %s eta %s",
            pc->tty ? "\r\033[K" : "", bar, (long long)p->iter, p->epoch, p->loss, p->acc, extra,
            p->img_per_s, p->lr, el, eta);
    if (p->val_acc >= 0) fprintf(stderr, " | val acc %.4f", p->val_acc);
    if (!pc->tty || p->event == JEM_EV_EPOCH) fputc('\n', stderr);
    fflush(stderr);
}

static int parse_milestones(const char *s, jem_sched *sc)
{
    sc->n_milestones = 0;
    if (!s || !*s) return 0;
    const char *p = s;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || sc->n_milestones >= 16) return -1;
        sc->milestones[sc->n_milestones++] = (int)v;
        p = end;
        if (*p == ',') p++;
        else if (*p) return -1;
    }
    return 0;
}

int cmd_train(int argc, char **argv)
{
    const char *model = "models/wrn-fmnist.model", *data = "fmnist:train", *out = NULL, *resume = NULL;
    const char *mode = "softmax", *opt = "adam", *milestones = NULL, *init = "uniform", *test = NULL;
    const char *log = NULL, *samples = NULL;
    int val = 5000, threads = 0, json = 0, flip = 0, crop = 0, full_cov = 0, mala = 0, clamp = 0, nesterov = 0;
    float lr = -1, noise = -1;
    jem_train_cfg c;
    jem_train_defaults(&c, JEM_MODE_SOFTMAX);
    /* the JEM defaults for the JEM-only options */
    jem_train_cfg cj;
    jem_train_defaults(&cj, JEM_MODE_JEM);
    int warmup = -1;
    float wx = cj.w_x;
    uint64_t seed = 1;
    const cli_opt opts[] = {
        {"mode", OPT_STR, &mode, "softmax (cross-entropy only) or jem (hybrid with SGLD)"},
        {"model", OPT_STR, &model, "model description file"},
        {"data", OPT_STR, &data, "training data set"},
        {"val", OPT_INT, &val, "images held out for validation"},
        {"test", OPT_STR, &test, "data set to evaluate at the end (e.g. fmnist:test)"},
        {"out", OPT_STR, &out, "checkpoint path (default runs/<mode>.safetensors)"},
        {"resume", OPT_STR, &resume, "continue from this checkpoint (same data and options)"},
        {"epochs", OPT_INT, &c.epochs, "epoch budget (0: none)"},
        {"minutes", OPT_DOUBLE, &c.minutes, "wall-clock budget (0: none)"},
        {"iters", OPT_I64, &c.iters, "iteration budget (0: none)"},
        {"batch", OPT_INT, &c.batch, "labelled images per iteration"},
        {"opt", OPT_STR, &opt, "adam or sgd"},
        {"lr", OPT_FLOAT, &lr, "learning rate (default 1e-3 softmax, 1e-4 jem)"},
        {"momentum", OPT_FLOAT, &c.opt.momentum, "SGD momentum"},
        {"nesterov", OPT_FLAG, &nesterov, "Nesterov momentum (SGD)"},
        {"wd", OPT_FLOAT, &c.opt.weight_decay, "weight decay (L2 added to the gradient)"},
        {"warmup", OPT_INT, &warmup, "linear warm-up iterations (default 0 softmax, 1000 jem)"},
        {"milestones", OPT_STR, &milestones, "iterations at which the lr is multiplied by --gamma (a,b,c)"},
        {"gamma", OPT_FLOAT, &c.sched.gamma, "lr decay factor at each milestone"},
        {"cosine", OPT_FLAG, &c.sched.cosine, "cosine lr decay to zero over the budget (iterations or minutes)"},
        {"crop", OPT_INT, &crop, "random crop padding in pixels (0: off)"},
        {"flip", OPT_FLAG, &flip, "random horizontal flips"},
        {"noise", OPT_FLOAT, &noise, "Gaussian noise sigma on training inputs (default 0 softmax, 0.03 jem)"},
        {"w-y", OPT_FLOAT, &c.w_y, "weight of the cross-entropy term"},
        {"w-x", OPT_FLOAT, &wx, "weight of the p(x) term (jem)"},
        {"w-xy", OPT_FLOAT, &c.w_xy, "weight of the class-conditional p(x|y) term (jem)"},
        {"l2", OPT_FLOAT, &c.l2, "energy penalty E(data)^2 + E(sample)^2 (jem)"},
        {"gen-warmup", OPT_INT, &c.gen_warmup, "ramp the generative terms in linearly over this many iterations (jem)"},
        {"sgld-steps", OPT_INT, &cj.sgld.steps, "SGLD steps per iteration (K)"},
        {"sgld-step", OPT_FLOAT, &cj.sgld.step_size, "SGLD step size (alpha)"},
        {"sgld-noise", OPT_FLOAT, &cj.sgld.noise, "SGLD noise (sigma)"},
        {"sgld-clamp", OPT_FLAG, &clamp, "clamp chains to [-1, 1] after each step"},
        {"sgld-max-step", OPT_FLOAT, &cj.sgld.max_step, "clip each pixel's drift to this (0: off)"},
        {"mala", OPT_FLAG, &mala, "Metropolis-adjusted chains (MALA) instead of SGLD"},
        {"buffer", OPT_INT, &cj.buffer_size, "replay buffer size"},
        {"reinit", OPT_FLOAT, &cj.reinit, "probability a chain restarts from the init distribution"},
        {"init", OPT_STR, &init, "chain init: uniform or informative (per-class Gaussian, JEM++)"},
        {"full-cov", OPT_FLAG, &full_cov, "informative init with full covariance"},
        {"n-samples", OPT_INT, &cj.n_samples, "chains per iteration (0: the batch size)"},
        {"div-threshold", OPT_FLOAT, &cj.div_threshold, "|loss| or |energy| above this is divergence"},
        {"max-retries", OPT_INT, &cj.max_retries, "rollbacks before giving up"},
        {"retry-lr", OPT_FLOAT, &cj.retry_lr_factor, "lr multiplier after each rollback"},
        {"labels-per-class", OPT_INT, &c.labels_per_class, "semi-supervised: labels kept per class (0: all)"},
        {"samples", OPT_STR, &samples, "PNG grid of replay-buffer samples, refreshed during training"},
        {"sample-every", OPT_INT, &cj.sample_every, "iterations between sample grids"},
        {"log", OPT_STR, &log, "JSON-lines metrics log (appended)"},
        {"log-every", OPT_INT, &c.log_every, "iterations per progress/log line"},
        {"ckpt-every", OPT_INT, &c.ckpt_every, "iterations between checkpoints (0: each epoch)"},
        {"eval-every", OPT_INT, &c.eval_every, "iterations between validations (0: each epoch)"},
        {"seed", OPT_U64, &seed, "random seed"},
        {"threads", OPT_INT, &threads, "threads (0: all cores)"},
        {"json", OPT_FLAG, &json, "print the final figures as JSON on stdout"},
        {"inject-blowup", OPT_I64, &c.inject_blowup_at, "testing: multiply the lr by 1e6 at this iteration"},
        {NULL, 0, NULL, NULL}};
    const char *pos[1];
    int npos;
    int r = cli_parse("train", "[options]", opts, argc, argv, 2, pos, 0, &npos);
    if (r) return r > 0 ? 0 : 2;
    if (!strcmp(mode, "jem")) c.mode = JEM_MODE_JEM;
    else if (strcmp(mode, "softmax")) { fprintf(stderr, "jem train: error: --mode must be softmax or jem, got '%s'\n", mode); return 2; }
    if (!strcmp(opt, "sgd")) { float mom = c.opt.momentum, wd = c.opt.weight_decay; jem_opt_defaults(&c.opt, JEM_OPT_SGD); c.opt.momentum = mom; c.opt.weight_decay = wd; }
    else if (strcmp(opt, "adam")) { fprintf(stderr, "jem train: error: --opt must be adam or sgd, got '%s'\n", opt); return 2; }
    c.opt.nesterov = nesterov;
    if (!strcmp(init, "informative")) cj.init = JEM_INIT_INFORMATIVE;
    else if (strcmp(init, "uniform")) { fprintf(stderr, "jem train: error: --init must be uniform or informative, got '%s'\n", init); return 2; }
    if (parse_milestones(milestones, &c.sched)) { fprintf(stderr, "jem train: error: bad --milestones '%s'\n", milestones); return 2; }
    if (c.batch < 1 || val < 0 || crop < 0 || threads < 0) { fprintf(stderr, "jem train: error: --batch, --val, --crop and --threads must not be negative\n"); return 2; }
    int is_jem = c.mode == JEM_MODE_JEM;
    c.sched.lr = lr > 0 ? lr : (is_jem ? 1e-4f : 1e-3f);
    c.sched.warmup = warmup >= 0 ? warmup : (is_jem ? 1000 : 0);
    c.aug.crop_pad = crop;
    c.aug.hflip = flip;
    c.aug.noise = noise >= 0 ? noise : (is_jem ? 0.03f : 0.0f);
    c.w_x = is_jem ? wx : 0.0f;
    c.sgld = cj.sgld;
    c.sgld.clamp = clamp;
    c.sgld.mala = mala;
    c.buffer_size = cj.buffer_size;
    c.reinit = cj.reinit;
    c.init = cj.init;
    c.full_cov = full_cov;
    c.n_samples = cj.n_samples;
    c.div_threshold = cj.div_threshold;
    c.max_retries = cj.max_retries;
    c.retry_lr_factor = cj.retry_lr_factor;
    c.sample_every = cj.sample_every;
    c.seed = seed;
    c.log_path = log;
    c.sample_path = samples;
    jem_set_threads(threads);

    char outbuf[256];
    if (!out) {
        snprintf(outbuf, sizeof outbuf, "runs/%s.safetensors", mode);
        out = outbuf;
        if (system("mkdir -p runs") != 0) { fprintf(stderr, "jem train: error: cannot create runs/\n"); return 1; }
    }
    c.ckpt_path = out;

    jem_net *net = NULL;
    jem_status s;
    if (resume) {
        s = jem_ckpt_load(resume, &net);
    } else {
        jem_arch a;
        s = jem_arch_load(model, &a);
        if (!s) s = jem_net_create(&a, &net);
        if (!s) {
            jem_rng rng;
            jem_rng_seed(&rng, seed, 0x696e6974);
            jem_net_init(net, &rng);
        }
    }
    if (s) return cli_fail("train", s);
    const jem_arch *a = jem_net_arch(net);
    jem_dataset all, tr, va;
    memset(&va, 0, sizeof va);
    s = cli_open_data(data, a, &all);
    if (s) { jem_net_free(net); return cli_fail("train", s); }
    if (val > 0) {
        s = jem_dataset_split(&all, val, seed, &tr, &va);
        if (s) { jem_dataset_free(&all); jem_net_free(net); return cli_fail("train", s); }
    } else {
        tr = all;
    }
    const char *meta[] = {"jem.train.command", "", NULL, NULL};
    char cmdline[2048] = "jem";
    size_t off = 3;
    for (int i = 1; i < argc && off < sizeof cmdline - 2; i++)
        off += (size_t)snprintf(cmdline + off, sizeof cmdline - off, " %s", argv[i]);
    meta[1] = cmdline;
    c.meta = meta;
    prog_ctx pc = {isatty(2), json};
    c.progress = progress;
    c.ud = &pc;
    c.stop = &stop_flag;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    const int rank0 = jem_dist_rank() == 0, ranks = jem_dist_size();
    if (rank0) {
        char rk[64] = "";
        if (ranks > 1) snprintf(rk, sizeof rk, ", %d ranks (global batch %d)", ranks, c.batch * ranks);
        fprintf(stderr, "jem train: %s on %s (%d images, %d held out), model %s (%zu parameters), %d threads%s\n",
                is_jem ? "JEM" : "softmax", tr.name, tr.n, va.n, a->name, jem_net_nparams(net), jem_get_threads(), rk);
    }
    const double comm0 = jem_dist_comm_seconds();
    s = jem_train(net, &tr, va.n ? &va : NULL, &c, resume);
    const double comm = jem_dist_comm_seconds() - comm0;
    if (pc.tty && rank0) fputc('\n', stderr);
    int rc = 0;
    if (s) {
        rc = cli_fail("train", s);
    } else {
        double vacc = -1, tacc = -1, tnll = -1;
        if (va.n) s = jem_evaluate(net, &va, &vacc, NULL);
        jem_dataset te;
        if (!s && test) {
            s = cli_open_data(test, a, &te);
            if (!s) { s = jem_evaluate(net, &te, &tacc, &tnll); jem_dataset_free(&te); }
        }
        if (s) rc = cli_fail("train", s);
        else if (!rank0) {
            /* rank 0 reports */
        } else if (json) {
            jem_jw w;
            jem_jw_init(&w);
            jem_jw_obj_begin(&w);
            jem_jw_kstr(&w, "checkpoint", out);
            if (vacc >= 0) jem_jw_kdouble(&w, "val_acc", vacc);
            if (ranks > 1) { jem_jw_kint(&w, "ranks", ranks); jem_jw_kdouble(&w, "comm_seconds", comm); }
            if (test) {
                jem_jw_kstr(&w, "test", test);
                jem_jw_kdouble(&w, "test_acc", tacc);
                jem_jw_kdouble(&w, "test_nll", tnll);
            }
            jem_jw_obj_end(&w);
            printf("%s\n", jem_jw_cstr(&w));
            jem_jw_free(&w);
        } else {
            printf("checkpoint: %s\n", out);
            if (vacc >= 0) printf("validation accuracy: %.4f\n", vacc);
            if (test) printf("%s accuracy: %.4f  nll: %.4f\n", test, tacc, tnll);
            if (ranks > 1) printf("ranks: %d, time in MPI collectives (rank 0): %.2f s\n", ranks, comm);
        }
    }
    jem_dataset_free(&tr);
    jem_dataset_free(&va);
    jem_net_free(net);
    return rc;
}
