/* jem train: softmax or JEM training with a progress bar on stderr. Every
 * default is the library's (jem_train_defaults for the chosen mode). */
#include "cli/cli.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static volatile int stop_flag;
static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

typedef struct {
    int tty;
} prog_ctx;

static void progress(void *ud, const jem_progress *p)
{
    prog_ctx *pc = ud;
    char el[32], eta[32];
    cli_fmt_time(p->elapsed, el, sizeof el);
    cli_fmt_time(p->eta, eta, sizeof eta);
    if (p->event == JEM_EV_ROLLBACK) {
        fprintf(stderr, "%swarning: %s\n", pc->tty ? "\r\033[K" : "", p->msg);
        return;
    }
    if (p->event == JEM_EV_CKPT) return;
    char bar[32];
    cli_bar_text(bar, sizeof bar, p->iter_total > 0 ? (double)p->iter / p->iter_total : -1);
    char extra[160] = "";
    size_t n = 0;
    if (p->adv_eps > 0) n = (size_t)snprintf(extra, sizeof extra, " adv acc %.3f eps %.3g", p->adv_acc, p->adv_eps);
    if (p->e_data != 0 || p->e_sample != 0)
        snprintf(extra + n, sizeof extra - n, " E(data) %.3g E(sample) %.3g", p->e_data, p->e_sample);
    fprintf(stderr, "%s%sit %lld ep %d loss %.4f acc %.3f%s %.0f img/s lr %.2g %s eta %s", pc->tty ? "\r\033[K" : "",
            bar, (long long)p->iter, p->epoch, p->loss, p->acc, extra, p->img_per_s, p->lr, el, eta);
    if (p->val_acc >= 0) fprintf(stderr, " | val acc %.4f", p->val_acc);
    if (!pc->tty || p->event == JEM_EV_EPOCH) fputc('\n', stderr);
    fflush(stderr);
}

/* "a,b,c": increasing iterations, at most 16 */
static int parse_milestones(const char *s, jem_sched *sc)
{
    sc->n_milestones = 0;
    if (!s || !*s) return 0;
    const char *p = s;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > INT32_MAX || sc->n_milestones >= 16) return -1;
        if (sc->n_milestones && v <= sc->milestones[sc->n_milestones - 1]) return -1;
        sc->milestones[sc->n_milestones++] = (int)v;
        p = end;
        if (*p == ',' && p[1]) p++;
        else if (*p) return -1;
    }
    return 0;
}

typedef struct {
    jem_train_cfg c;
    const char *mode, *opt, *init, *milestones, *data, *test, *out, *resume, *init_from, *log, *samples, *sampler;
    int val, flip, crop, full_cov, mala, clamp, nesterov, force;
    float temperature;          /* MALA and HMC */
    const char *adv, *adv_norm; /* adversarial training: none|pgd|trades, linf|l2 */
    const char *precision;      /* the chains' products: fp32|bf16 */
    double adv_eps;             /* its radius on the [0, 1] scale */
    int adv_no_rs;              /* PGD starts at the clean image */
    int64_t blowup_at;          /* --inject-blowup (testing) */
    char outbuf[256];
} train_args;

static int same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* checks across options, before anything is loaded */
static int check(cli_ctx *cx, void *ud)
{
    train_args *t = ud;
    const cli_spec *sp = cx->spec;
    const int jem = t->c.mode == JEM_MODE_JEM;
    if (!jem)
        for (const cli_opt *o = sp->opts; o->name; o++)
            if ((o->flags & OPT_JEM) && o->seen)
                return cli_usage_error("train", "--%s applies to --mode jem only", o->name);
    /* the chains' sampler and the options that belong to it */
    if (t->mala) {
        if (cli_given(sp, "sampler") && strcmp(t->sampler, "mala"))
            return cli_usage_error("train", "--mala and --sampler %s exclude each other", t->sampler);
        t->sampler = "mala";
    }
    const int hmc = !strcmp(t->sampler, "hmc");
    static const char *const hmc_only[] = {"hmc-steps", "leapfrog", "hmc-step", "target-accept"};
    static const char *const sgld_only[] = {"sgld-steps", "sgld-step", "sgld-noise", "sgld-max-step"};
    for (int i = 0; i < 4; i++) {
        if (!hmc && cli_given(sp, hmc_only[i]))
            return cli_usage_error("train", "--%s needs --sampler hmc", hmc_only[i]);
        if (hmc && cli_given(sp, sgld_only[i]))
            return cli_usage_error("train",
                                   "--%s is for SGLD and MALA chains; HMC's are --hmc-steps, --leapfrog, --hmc-step "
                                   "and --target-accept",
                                   sgld_only[i]);
    }
    jem_precision prec;
    if (jem_precision_parse(t->precision, &prec)) return cli_usage_error("train", "--precision %s", jem_last_error());
    if (!strcmp(t->sampler, "sgld") && cli_given(sp, "temperature"))
        return cli_usage_error("train", "--temperature needs --sampler mala or hmc");
    /* adversarial training and the options that belong to it */
    static const char *const adv_opts[] = {"adv-eps",  "adv-norm",    "adv-steps",          "adv-step",
                                           "adv-ramp", "trades-beta", "adv-no-random-start"};
    for (int i = 0; i < 7; i++)
        if (!strcmp(t->adv, "none") && cli_given(sp, adv_opts[i]))
            return cli_usage_error("train", "--%s applies with --adv pgd or --adv trades", adv_opts[i]);
    if (strcmp(t->adv, "trades") && cli_given(sp, "trades-beta"))
        return cli_usage_error("train", "--trades-beta applies with --adv trades only");
    if (!strcmp(t->adv, "trades") && t->adv_no_rs)
        return cli_usage_error("train",
                               "--adv-no-random-start with --adv trades: the KL to the clean prediction has no "
                               "gradient at the clean image, the attack would never move");
    if (parse_milestones(t->milestones, &t->c.sched))
        return cli_usage_error("train",
                               "--milestones '%s': want up to 16 increasing iterations >= 1, "
                               "e.g. 2000,4000",
                               t->milestones);
    if (cli_given(sp, "px-rows") && !t->crop && !t->flip)
        return cli_usage_error("train", "--px-rows applies with --crop or --flip only (without them the p(x) term's "
                                        "data are the batch rows)");
    if (!t->c.epochs && !(t->c.minutes > 0) && !t->c.iters)
        return cli_usage_error("train", "no budget: give --epochs, --minutes or --iters");
    if (t->test && cli_spec_unlabelled(t->test))
        return cli_usage_error("train", "--test %s: the set has no labels to measure accuracy on", t->test);
    if (cli_spec_unlabelled(t->data))
        return cli_usage_error("train", "--data %s: the set has no labels (noise: and interp: sets have none)",
                               t->data);
    if (t->resume && t->init_from)
        return cli_usage_error("train", "--resume and --init-from exclude each other (--resume continues a run, "
                                        "--init-from starts a new one from a checkpoint's weights)");
    if (!t->resume && !t->init_from && !cx->model_given && access(cx->model, R_OK) != 0)
        return cli_usage_error("train", "--model %s (the default): %s; give --model FILE, a model description",
                               cx->model, strerror(errno));
    if (t->c.n_samples > 0 && t->c.n_samples > t->c.buffer_size)
        return cli_usage_error("train", "--n-samples %d: more chains than the --buffer of %d", t->c.n_samples,
                               t->c.buffer_size);
    if (!t->out) {
        /* the default: runs/<mode>.safetensors, runs/ made when missing */
        snprintf(t->outbuf, sizeof t->outbuf, "runs/%s.safetensors", t->mode);
        t->out = t->outbuf;
        struct stat sb;
        if (stat("runs", &sb) != 0 && access(".", W_OK | X_OK) != 0)
            return cli_usage_error("train", "cannot create runs/ here for the checkpoint: give --out");
        if (stat("runs", &sb) == 0 && cli_check_out_file("train", "out", t->out)) return 2;
    }
    /* an existing checkpoint is replaced only when asked */
    if (!t->resume && !t->force && access(t->out, F_OK) == 0)
        return cli_usage_error("train", "--out %s exists; --force replaces it, --resume %s continues its training",
                               t->out, t->out);
    if (t->log && (same_file(t->log, t->out) || !strcmp(t->log, t->out)))
        return cli_usage_error("train", "--log and --out name the same file");
    if (t->samples && (same_file(t->samples, t->out) || !strcmp(t->samples, t->out)))
        return cli_usage_error("train", "--samples and --out name the same file");
    if (t->resume) {
        /* a weights-only file has no training state: refused before the data is read */
        jem_st *st = NULL;
        if (cli_check_only()) return 0;
        jem_status s = jem_st_open(t->resume, &st);
        if (s) return cli_usage_error("train", "--resume %s", jem_last_error());
        const char *mode = jem_st_get_meta(st, "jem.train.mode");
        int has_state = jem_st_get(st, "_opt.m", NULL, NULL, NULL) != NULL;
        char m[16];
        snprintf(m, sizeof m, "%s", mode ? mode : "");
        jem_st_free(st);
        if (!has_state)
            return cli_usage_error("train",
                                   "--resume %s: weights-only file (no training state, e.g. an exported "
                                   "model): cannot resume; --init-from %s trains from its weights",
                                   t->resume, t->resume);
        if (m[0] && strcmp(m, t->mode))
            return cli_usage_error("train", "--resume %s: the run was trained with --mode %s, not %s", t->resume, m,
                                   t->mode);
    }
    /* with --resume or --init-from the checkpoint holds the model: a
     * description given as well must describe the same one */
    const char *from = t->resume ? t->resume : t->init_from;
    if (from && cx->model_given && !cli_check_only()) {
        jem_arch given, held;
        jem_st *st = NULL;
        jem_status s = jem_arch_load(cx->model, &given);
        if (s) return cli_usage_error("train", "--model %s", jem_last_error());
        s = jem_st_open(from, &st);
        const char *desc = s ? NULL : jem_st_get_meta(st, "jem.arch");
        if (!s) s = desc ? jem_arch_parse(desc, from, &held) : jem_fail(JEM_ERR_FORMAT, "%s: no jem.arch", from);
        jem_st_free(st);
        if (s) return cli_usage_error("train", "--%s %s", t->resume ? "resume" : "init-from", jem_last_error());
        char a[2048], b[2048];
        memcpy(held.name, given.name, sizeof held.name); /* the same network under another name is fine */
        jem_arch_format(&given, a, sizeof a);
        jem_arch_format(&held, b, sizeof b);
        if (strcmp(a, b))
            return cli_usage_error("train",
                                   "--model %s describes another model than the one %s holds (the checkpoint "
                                   "brings its model: --model can be left out)",
                                   cx->model, from);
    }
    return 0;
}

/* the class names of the data set, as the JSON array "jem.classes" */
static char *classes_json(const jem_dataset *ds)
{
    if (!ds->classes) return NULL;
    jem_jw w;
    jem_jw_init(&w);
    jem_jw_arr_begin(&w);
    for (int k = 0; k < ds->n_classes; k++) jem_jw_str(&w, ds->classes[k]);
    jem_jw_arr_end(&w);
    return jem_jw_take(&w, NULL);
}

static int run(cli_ctx *cx, train_args *t, int argc, char **argv)
{
    jem_train_cfg *c = &t->c;
    const int is_jem = c->mode == JEM_MODE_JEM;
    if (!strcmp(t->opt, "sgd")) {
        /* the library's SGD settings, with the momentum and decay asked for */
        jem_opt_cfg o;
        jem_opt_defaults(&o, JEM_OPT_SGD);
        o.momentum = c->opt.momentum;
        o.weight_decay = c->opt.weight_decay;
        c->opt = o;
    }
    c->opt.nesterov = t->nesterov;
    c->init = !strcmp(t->init, "informative") ? JEM_INIT_INFORMATIVE : JEM_INIT_UNIFORM;
    c->full_cov = t->full_cov;
    c->aug.crop_pad = t->crop;
    c->aug.hflip = t->flip;
    c->sgld.clamp = t->clamp;
    c->sampler = !strcmp(t->sampler, "hmc") ? JEM_SAMPLER_HMC : JEM_SAMPLER_SGLD;
    c->sgld.mala = !strcmp(t->sampler, "mala");
    c->sgld.temperature = c->hmc.temperature = t->temperature;
    jem_precision_parse(t->precision, &c->chain_precision); /* checked by check() */
    c->adv.kind = !strcmp(t->adv, "pgd") ? JEM_ADV_PGD : !strcmp(t->adv, "trades") ? JEM_ADV_TRADES : JEM_ADV_NONE;
    c->adv.norm = !strcmp(t->adv_norm, "l2") ? 2 : 0;
    c->adv.eps = 2.0 * t->adv_eps; /* [0, 1] scale -> the model's [-1, 1] units */
    c->adv.random_start = !t->adv_no_rs;
    c->log_path = t->log;
    c->sample_path = t->samples;
    c->ckpt_path = t->out;
    const int rank0 = jem_dist_rank() == 0, ranks = jem_dist_size();
    if (t->out == t->outbuf && rank0) {
        jem_status s = cli_make_dir("runs");
        if (s) return cli_fail("train", s);
    }

    jem_net *net = NULL;
    jem_status s;
    const char *from = t->resume ? t->resume : t->init_from;
    if (from) {
        s = jem_ckpt_load(from, &net);
    } else {
        jem_arch a;
        s = jem_arch_load(cx->model, &a);
        if (!s) s = jem_net_create(&a, &net);
        if (!s) {
            jem_rng rng;
            jem_rng_seed(&rng, c->seed, 0x696e6974);
            jem_net_init(net, &rng);
        }
    }
    if (s) return cli_fail("train", s);
    cx->net = net;
    cx->arch = jem_net_arch(net);
    const jem_arch *a = cx->arch;
    if (t->crop >= a->in_h || t->crop >= a->in_w) {
        cli_end(cx);
        return cli_usage_error("train", "--crop %d: want less than the image's %dx%d", t->crop, a->in_h, a->in_w);
    }
    jem_dataset all, tr, va, te;
    memset(&va, 0, sizeof va);
    memset(&tr, 0, sizeof tr);
    memset(&te, 0, sizeof te);
    char *classes = NULL;
    int rc = 0;
    s = cli_open_data(cx, "data", t->data, &all);
    if (!s) s = cli_check_labels(cx, "data", &all, 0);
    if (!s && t->val >= all.n)
        s = jem_fail(JEM_ERR_ARG, "--val %d: the data set %s has only %d images", t->val, all.name, all.n);
    if (!s && c->batch > all.n - t->val)
        s = jem_fail(JEM_ERR_ARG, "--batch %d: larger than the %d training images of %s", c->batch, all.n - t->val,
                     all.name);
    /* the test set is read and its labels checked now, not after the training it would follow */
    if (!s && t->test) {
        s = cli_open_data(cx, "test", t->test, &te);
        if (!s) s = cli_check_labels(cx, "test", &te, 1);
    }
    if (s) {
        jem_dataset_free(&all);
        rc = cli_fail("train", s);
        goto done;
    }
    classes = classes_json(&all);
    if (t->val > 0) {
        s = jem_dataset_split(&all, t->val, c->seed, &tr, &va);
        if (s) {
            jem_dataset_free(&all);
            rc = cli_fail("train", s);
            goto done;
        }
    } else {
        tr = all;
    }
    const char *meta[] = {"jem.train.command", "", classes ? "jem.classes" : NULL, classes, NULL, NULL};
    char cmdline[2048] = "jem";
    size_t off = 3;
    for (int i = 1; i < argc && off < sizeof cmdline - 2; i++)
        off += (size_t)snprintf(cmdline + off, sizeof cmdline - off, " %s", argv[i]);
    meta[1] = cmdline;
    c->meta = meta;
    prog_ctx pc = {isatty(2) && rank0};
    c->progress = progress;
    c->ud = &pc;
    c->stop = &stop_flag;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (rank0) {
        char rk[64] = "";
        if (ranks > 1) snprintf(rk, sizeof rk, ", %d ranks (global batch %d)", ranks, c->batch * ranks);
        fprintf(stderr, "jem train: %s on %s (%d images, %d held out), model %s (%zu parameters), %d threads%s\n",
                is_jem ? "JEM" : "softmax", tr.name, tr.n, va.n, a->name, jem_net_nparams(net), jem_get_threads(), rk);
        if (t->resume) {
            jem_st *st = NULL;
            if (jem_st_open(t->resume, &st) == JEM_OK) {
                const char *it = jem_st_get_meta(st, "jem.train.iter"), *ep = jem_st_get_meta(st, "jem.train.epoch");
                fprintf(stderr, "jem train: resuming %s from iteration %s (epoch %s)\n", t->resume, it ? it : "?",
                        ep ? ep : "?");
            }
            jem_st_free(st);
        } else if (t->init_from) {
            fprintf(stderr, "jem train: starting from the weights of %s\n", t->init_from);
        }
        if (c->adv.kind != JEM_ADV_NONE) {
            char ramp[96] = "";
            if (c->adv.ramp > 0)
                snprintf(ramp, sizeof ramp, ", rising linearly over the first %d iterations", c->adv.ramp);
            char beta[48] = "";
            if (c->adv.kind == JEM_ADV_TRADES) snprintf(beta, sizeof beta, ", beta %g", (double)c->adv.beta);
            fprintf(stderr, "jem train: %s: %s eps %g ([0, 1] scale)%s; PGD of %d steps of %g eps from %s%s%s\n",
                    c->adv.kind == JEM_ADV_TRADES ? "TRADES" : "PGD adversarial training", c->adv.norm ? "L2" : "L-inf",
                    t->adv_eps, ramp, c->adv.steps, c->adv.step,
                    c->adv.random_start ? "a random start" : "the clean image", beta,
                    is_jem ? "; the generative terms on clean data" : "");
        }
        if (is_jem && c->sampler == JEM_SAMPLER_HMC)
            fprintf(stderr,
                    "jem train: HMC chains: %d iterations of %d leapfrog steps per training iteration, step size %g "
                    "%s\n",
                    c->hmc.steps, c->hmc.leapfrog, (double)c->hmc.step_size,
                    c->hmc.target_accept > 0 ? "at first, then adapted to the acceptance asked (--target-accept)"
                                             : "(fixed)");
        if (is_jem && c->init == JEM_INIT_INFORMATIVE && !t->resume) {
            const int D = a->in_c * a->in_h * a->in_w;
            if (c->full_cov)
                fprintf(stderr,
                        "jem train: fitting the informative init: %d class means and full %dx%d covariances "
                        "(their Cholesky factors), once before the first iteration\n",
                        a->n_classes, D, D);
            else fprintf(stderr, "jem train: fitting the informative init: per-class means and variances\n");
        }
    }
    const double comm0 = jem_dist_comm_seconds();
    s = t->blowup_at ? jem_train_test_blowup(net, &tr, va.n ? &va : NULL, c, t->resume, t->blowup_at)
                     : jem_train(net, &tr, va.n ? &va : NULL, c, t->resume);
    const double comm = jem_dist_comm_seconds() - comm0;
    if (pc.tty) fputc('\n', stderr);
    if (s) {
        rc = cli_fail("train", s);
        goto done;
    }
    double vacc = -1, tacc = -1, tnll = -1;
    if (va.n) s = jem_evaluate(net, &va, &vacc, NULL);
    if (!s && t->test) s = jem_evaluate(net, &te, &tacc, &tnll);
    if (s) {
        rc = cli_fail("train", s);
    } else if (!rank0) {
        /* rank 0 reports */
    } else if (cx->json) {
        jem_jw w;
        jem_jw_init(&w);
        jem_jw_obj_begin(&w);
        jem_jw_kstr(&w, "checkpoint", t->out);
        if (vacc >= 0) jem_jw_kdouble(&w, "val_acc", vacc);
        if (ranks > 1) {
            jem_jw_kint(&w, "ranks", ranks);
            jem_jw_kdouble(&w, "comm_seconds", comm);
        }
        if (t->test) {
            jem_jw_kstr(&w, "test", t->test);
            jem_jw_kdouble(&w, "test_acc", tacc);
            jem_jw_kdouble(&w, "test_nll", tnll);
        }
        jem_jw_obj_end(&w);
        printf("%s\n", jem_jw_cstr(&w));
        jem_jw_free(&w);
    } else {
        printf("checkpoint: %s\n", t->out);
        if (vacc >= 0) printf("validation accuracy: %.4f\n", vacc);
        if (t->test) printf("%s accuracy: %.4f  nll: %.4f\n", t->test, tacc, tnll);
        if (ranks > 1) printf("ranks: %d, time in MPI collectives (rank 0): %.2f s\n", ranks, comm);
    }
done:
    free(classes);
    jem_dataset_free(&tr);
    jem_dataset_free(&va);
    jem_dataset_free(&te);
    return rc;
}

/* --mode, looked at before the table is built: the defaults are the mode's */
static const char *mode_arg(int argc, char **argv)
{
    const char *m = "softmax";
    for (int i = 2; i < argc; i++) {
        if (!strncmp(argv[i], "--mode=", 7)) m = argv[i] + 7;
        else if (!strcmp(argv[i], "--mode") && i + 1 < argc) m = argv[++i];
    }
    return m;
}

int cmd_train(int argc, char **argv)
{
    train_args t; /* the option table points into it */
    memset(&t, 0, sizeof t);
    jem_train_defaults(&t.c, !strcmp(mode_arg(argc, argv), "jem") ? JEM_MODE_JEM : JEM_MODE_SOFTMAX);
    t.mode = t.c.mode == JEM_MODE_JEM ? "jem" : "softmax";
    t.opt = t.c.opt.kind == JEM_OPT_SGD ? "sgd" : "adam";
    t.init = t.c.init == JEM_INIT_INFORMATIVE ? "informative" : "uniform";
    t.data = "fmnist:train";
    t.val = 5000;
    t.full_cov = t.c.full_cov;
    t.mala = t.c.sgld.mala;
    t.clamp = t.c.sgld.clamp;
    t.sampler = t.c.sampler == JEM_SAMPLER_HMC ? "hmc" : t.c.sgld.mala ? "mala" : "sgld";
    t.temperature = t.c.sgld.temperature;
    t.nesterov = t.c.opt.nesterov;
    t.adv = t.c.adv.kind == JEM_ADV_PGD ? "pgd" : t.c.adv.kind == JEM_ADV_TRADES ? "trades" : "none";
    t.adv_norm = t.c.adv.norm == 2 ? "l2" : "linf";
    t.adv_eps = t.c.adv.eps / 2;
    t.precision = t.c.chain_precision == JEM_PRECISION_BF16 ? "bf16" : "fp32";
    jem_train_cfg *c = &t.c;
    cli_opt opts[] = {
        {OPT("mode", OPT_STR, &t.mode, "softmax (cross-entropy only) or jem (hybrid with SGLD)"),
         .choices = "softmax|jem"},
        {OPT("data", OPT_STR, &t.data, "training data set"), .flags = OPT_SPEC},
        {OPT("val", OPT_INT, &t.val, "images held out for validation"), ATLEAST(0)},
        {OPT("test", OPT_STR, &t.test, "data set to evaluate at the end (e.g. fmnist:test)"), .flags = OPT_SPEC},
        {OPT("out", OPT_STR, &t.out, "checkpoint path"), .flags = OPT_OUT_FILE, .def = "runs/<mode>.safetensors"},
        {OPT("force", OPT_FLAG, &t.force, "replace an existing --out checkpoint")},
        {OPT("resume", OPT_STR, &t.resume, "continue from this checkpoint (same data and options)"),
         .flags = OPT_IN_FILE},
        {OPT("init-from", OPT_STR, &t.init_from, "start a new run from this checkpoint's weights"),
         .flags = OPT_IN_FILE},
        {OPT("epochs", OPT_INT, &c->epochs, "epoch budget (0: none)"), ATLEAST(0)},
        {OPT("minutes", OPT_DOUBLE, &c->minutes, "wall-clock budget (0: none)"), RANGE(0, 1e7)},
        {OPT("iters", OPT_I64, &c->iters, "iteration budget (0: none)"), ATLEAST(0)},
        {OPT("batch", OPT_INT, &c->batch, "labelled images per iteration"), RANGE(1, 1 << 20)},
        {OPT("opt", OPT_STR, &t.opt, "optimiser"), .choices = "adam|sgd"},
        {OPT("lr", OPT_FLOAT, &c->sched.lr, "learning rate"), RANGE(0, 10)},
        {OPT("momentum", OPT_FLOAT, &c->opt.momentum, "SGD momentum"), RANGE(0, 1)},
        {OPT("nesterov", OPT_FLAG, &t.nesterov, "Nesterov momentum (SGD)")},
        {OPT("wd", OPT_FLOAT, &c->opt.weight_decay, "weight decay (L2 added to the gradient)"), RANGE(0, 1)},
        {OPT("warmup", OPT_INT, &c->sched.warmup, "linear warm-up iterations"), ATLEAST(0)},
        {OPT("milestones", OPT_STR, &t.milestones, "iterations at which the lr is multiplied by --gamma (a,b,c)")},
        {OPT("gamma", OPT_FLOAT, &c->sched.gamma, "lr factor at each milestone"), ABOVE(0, 10)},
        {OPT("cosine", OPT_FLAG, &c->sched.cosine, "cosine lr decay to zero over the budget (iterations or minutes)")},
        {OPT("crop", OPT_INT, &t.crop, "random crop padding in pixels (0: off); cross-entropy rows only in jem mode"),
         RANGE(0, 1024)},
        {OPT("flip", OPT_FLAG, &t.flip, "random horizontal flips; cross-entropy rows only in jem mode")},
        {OPT("px-rows", OPT_INT, &c->px_rows,
             "with --crop/--flip: p(x)'s clean data rows (0: one per chain; -1: the augmented rows)"),
         ATLEAST(-1), .flags = OPT_JEM},
        {OPT("ema", OPT_FLOAT, &c->ema,
             "moving average of the weights, decay e.g. 0.999 (0: off); evaluated and saved"),
         BELOW(0, 1)},
        {OPT("noise", OPT_FLOAT, &c->aug.noise, "Gaussian noise sigma on training inputs"), RANGE(0, 10)},
        {OPT("adv", OPT_STR, &t.adv,
             "adversarial training of the cross-entropy: PGD-AT (CE on PGD examples) or TRADES (clean CE + beta KL)"),
         .choices = "none|pgd|trades"},
        {OPT("adv-eps", OPT_DOUBLE, &t.adv_eps, "--adv: attack radius on the [0, 1] pixel scale"), ABOVE(0, 1000)},
        {OPT("adv-norm", OPT_STR, &t.adv_norm, "--adv: threat model"), .choices = "linf|l2"},
        {OPT("adv-steps", OPT_INT, &c->adv.steps, "--adv: PGD steps per iteration"), RANGE(1, 10000)},
        {OPT("adv-step", OPT_DOUBLE, &c->adv.step, "--adv: PGD step as a fraction of the current radius"),
         ABOVE(0, 10)},
        {OPT("adv-ramp", OPT_INT, &c->adv.ramp, "--adv: the radius rises linearly over this many iterations (0: off)"),
         ATLEAST(0)},
        {OPT("trades-beta", OPT_FLOAT, &c->adv.beta, "--adv trades: weight of the KL term"), RANGE(0, 1e6)},
        {OPT("adv-no-random-start", OPT_FLAG, &t.adv_no_rs, "--adv pgd: start PGD at the clean image")},
        {OPT("w-y", OPT_FLOAT, &c->w_y, "weight of the cross-entropy term"), RANGE(0, 1e6)},
        {OPT("w-x", OPT_FLOAT, &c->w_x, "weight of the p(x) term"), RANGE(0, 1e6), .flags = OPT_JEM},
        {OPT("w-xy", OPT_FLOAT, &c->w_xy, "weight of the class-conditional p(x|y) term"), RANGE(0, 1e6),
         .flags = OPT_JEM},
        {OPT("l2", OPT_FLOAT, &c->l2, "energy penalty E(data)^2 + E(sample)^2"), RANGE(0, 1e6), .flags = OPT_JEM},
        {OPT("gen-warmup", OPT_INT, &c->gen_warmup,
             "ramp the generative terms in linearly over this many "
             "iterations"),
         ATLEAST(0), .flags = OPT_JEM},
        {OPT("sampler", OPT_STR, &t.sampler,
             "the chains' sampler: Langevin, Metropolis-adjusted Langevin or Hamiltonian Monte Carlo"),
         .choices = "sgld|mala|hmc", .flags = OPT_JEM},
        {OPT("sgld-steps", OPT_INT, &c->sgld.steps, "SGLD steps per iteration (K)"), RANGE(1, 100000),
         .flags = OPT_JEM},
        {OPT("precision", OPT_STR, &t.precision,
             "the chains' convolution products: fp32, or bf16 with fp32 sums (AVX512-BF16); training steps fp32"),
         .choices = "fp32|bf16", .flags = OPT_JEM},
        {OPT("sgld-step", OPT_FLOAT, &c->sgld.step_size, "SGLD step size (alpha)"), ABOVE(0, 1e6), .flags = OPT_JEM},
        {OPT("sgld-noise", OPT_FLOAT, &c->sgld.noise, "SGLD noise (sigma)"), RANGE(0, 100), .flags = OPT_JEM},
        {OPT("sgld-clamp", OPT_FLAG, &t.clamp,
             "keep chains in [-1, 1] (SGLD, MALA: clamped; HMC: reflected at the walls)"),
         .flags = OPT_JEM},
        {OPT("sgld-max-step", OPT_FLOAT, &c->sgld.max_step, "clip each pixel's drift to this (0: off)"), RANGE(0, 100),
         .flags = OPT_JEM},
        {OPT("mala", OPT_FLAG, &t.mala, "the same as --sampler mala"), .flags = OPT_JEM},
        {OPT("hmc-steps", OPT_INT, &c->hmc.steps, "HMC iterations per training iteration"), RANGE(1, 100000),
         .flags = OPT_JEM},
        {OPT("leapfrog", OPT_INT, &c->hmc.leapfrog, "HMC leapfrog steps per iteration"), RANGE(1, 10000),
         .flags = OPT_JEM},
        {OPT("hmc-step", OPT_FLOAT, &c->hmc.step_size, "HMC leapfrog step size to start from"), ABOVE(0, 100),
         .flags = OPT_JEM},
        {OPT("target-accept", OPT_FLOAT, &c->hmc.target_accept,
             "HMC: acceptance the step size adapts to (0: a fixed step)"),
         BELOW(0, 1), .flags = OPT_JEM},
        {OPT("temperature", OPT_FLOAT, &t.temperature, "MALA and HMC chains: target p~(x)^(1/T)"), ABOVE(0, 1e6),
         .flags = OPT_JEM},
        {OPT("buffer", OPT_INT, &c->buffer_size, "replay buffer size (images)"), RANGE(1, 10000000), .flags = OPT_JEM},
        {OPT("reinit", OPT_FLOAT, &c->reinit, "probability a chain restarts from the init distribution"), RANGE(0, 1),
         .flags = OPT_JEM},
        {OPT("init", OPT_STR, &t.init, "chain init (informative: per-class Gaussian, JEM++)"),
         .choices = "uniform|informative", .flags = OPT_JEM},
        {OPT("full-cov", OPT_FLAG, &t.full_cov, "informative init with full covariance"), .flags = OPT_JEM},
        {OPT("n-samples", OPT_INT, &c->n_samples, "chains per iteration (0: the batch size)"), RANGE(0, 1 << 20),
         .flags = OPT_JEM},
        {OPT("div-threshold", OPT_FLOAT, &c->div_threshold, "|loss| or |energy| above this is divergence"), POSITIVE},
        {OPT("max-retries", OPT_INT, &c->max_retries, "rollbacks before giving up"), RANGE(0, 1000)},
        {OPT("retry-lr", OPT_FLOAT, &c->retry_lr_factor, "lr multiplier after each rollback"), ABOVE(0, 1)},
        {OPT("labels-per-class", OPT_INT, &c->labels_per_class, "semi-supervised: labels kept per class (0: all)"),
         ATLEAST(0)},
        {OPT("samples", OPT_STR, &t.samples, "PNG grid of replay-buffer samples, refreshed during training"),
         .flags = OPT_OUT_FILE | OPT_JEM},
        {OPT("sample-every", OPT_INT, &c->sample_every, "iterations between sample grids"), ATLEAST(1),
         .flags = OPT_JEM},
        {OPT("log", OPT_STR, &t.log, "JSON-lines metrics log (appended)"), .flags = OPT_OUT_FILE},
        {OPT("log-every", OPT_INT, &c->log_every, "iterations per progress/log line"), ATLEAST(1)},
        {OPT("ckpt-every", OPT_INT, &c->ckpt_every, "iterations between checkpoints (0: each epoch)"), ATLEAST(0)},
        {OPT("eval-every", OPT_INT, &c->eval_every, "iterations between validations (0: each epoch)"), ATLEAST(0)},
        {OPT("seed", OPT_U64, &c->seed, "random seed")},
        {OPT("inject-blowup", OPT_I64, &t.blowup_at, "testing: multiply the lr by 1e6 at this iteration"), ATLEAST(0),
         .flags = OPT_HIDDEN},
        CLI_END};
    const cli_spec sp = {.name = "train",
                         .usage = "[--mode softmax|jem] [options]",
                         .opts = opts,
                         .model = CLI_MODEL_DESC,
                         .model_default = "models/wrn-fmnist.model",
                         .json = 1,
                         .threads = 1,
                         .check = check,
                         .ud = &t,
                         .note = t.c.mode == JEM_MODE_JEM ? "(the defaults shown are --mode jem's)"
                                                          : "(the defaults shown are --mode softmax's; "
                                                            "jem train --mode jem --help shows JEM's)",
                         .inactive = t.c.mode == JEM_MODE_JEM ? 0u : (unsigned)OPT_JEM,
                         .inactive_text = "--mode jem only"};
    cli_ctx cx;
    int r = cli_begin(&cx, &sp, argc, argv);
    if (r >= 0) return r;
    r = run(&cx, &t, argc, argv);
    cli_end(&cx);
    return r;
}
