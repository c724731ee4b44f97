/* jem report: the whole evaluation of a checkpoint on the default data
 * (Fashion-MNIST test; MNIST test and the synthetic sets as OOD data;
 * L-inf and L2 PGD, undefended and through SGLD purification) as one
 * self-contained HTML page (pictures embedded) and report.json. Each part
 * runs as its own jem command, whose JSON and pictures the page collects. */
#include "cli/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* run this executable with args, stdout to out_path (replaced atomically
 * once the step has ended, whatever its outcome); 0 on success */
static int run_self(char *const *args, const char *out_path)
{
    jem_atomic out;
    if (jem_atomic_open(&out, out_path)) return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        jem_atomic_abort(&out);
        return -1;
    }
    if (pid == 0) {
        if (dup2(fileno(out.fp), 1) < 0) _exit(127);
        execv("/proc/self/exe", args);
        _exit(127);
    }
    int st, rc = 0;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) { rc = -1; break; }
    if (jem_atomic_commit(&out)) return -1;
    return rc == 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void emit_png(jem_jw *h, const char *path, const char *alt)
{
    char *data = NULL;
    size_t n = 0;
    if (jem_read_file(path, 64u << 20, &data, &n)) {
        jem_jw_raw(h, "<p class=missing>(picture missing)</p>");
        return;
    }
    jem_jw_raw(h, "<img alt=\"");
    jem_jw_raw(h, alt);
    jem_jw_raw(h, "\" src=\"data:image/png;base64,");
    char q[5] = {0};
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned char)data[i] << 16;
        if (i + 1 < n) v |= (unsigned char)data[i + 1] << 8;
        if (i + 2 < n) v |= (unsigned char)data[i + 2];
        q[0] = B64[v >> 18 & 63];
        q[1] = B64[v >> 12 & 63];
        q[2] = i + 1 < n ? B64[v >> 6 & 63] : '=';
        q[3] = i + 2 < n ? B64[v & 63] : '=';
        jem_jw_rawn(h, q, 4);
    }
    jem_jw_raw(h, "\">");
    free(data);
}

static void html_text(jem_jw *h, const char *s)
{
    for (; *s; s++) {
        if (*s == '<') jem_jw_raw(h, "&lt;");
        else if (*s == '>') jem_jw_raw(h, "&gt;");
        else if (*s == '&') jem_jw_raw(h, "&amp;");
        else if (*s == '"') jem_jw_raw(h, "&quot;");
        else jem_jw_rawn(h, s, 1);
    }
}

/* a table cell: the number with `digits` decimals (< 0: shortest form) */
static void cell(jem_jw *h, const jem_json *v, int digits)
{
    double x;
    char buf[64];
    if (v && jem_json_num(v, &x)) {
        if (digits < 0) snprintf(buf, sizeof buf, "%g", x);
        else snprintf(buf, sizeof buf, "%.*f", digits, x);
    }
    else snprintf(buf, sizeof buf, "-");
    jem_jw_raw(h, "<td>");
    jem_jw_raw(h, buf);
    jem_jw_raw(h, "</td>");
}

static jem_json *load_json(const char *path, char **text)
{
    size_t n;
    jem_json *j = NULL;
    *text = NULL;
    if (jem_read_file(path, 64u << 20, text, &n)) return NULL;
    if (jem_json_parse(*text, n, path, &j)) return NULL;
    return j;
}

static void attack_table(jem_jw *h, const jem_json *a, const char *title)
{
    jem_jw_raw(h, "<h3>");
    html_text(h, title);
    jem_jw_raw(h, "</h3>");
    if (!a) { jem_jw_raw(h, "<p class=missing>(not run)</p>"); return; }
    const jem_json *eps = jem_json_get(a, "eps"), *u = jem_json_get(a, "undefended"), *d = jem_json_get(a, "defence");
    char buf[256];
    double n = 0, dn = 0, st = 0, ch = 0, eot = 0;
    jem_json_num(jem_json_get(a, "n"), &n);
    jem_json_num(jem_json_get(d, "n"), &dn);
    jem_json_num(jem_json_get(d, "sgld_steps"), &st);
    jem_json_num(jem_json_get(d, "chains"), &ch);
    jem_json_num(jem_json_get(d, "eot"), &eot);
    double steps = 0;
    jem_json_num(jem_json_get(a, "steps"), &steps);
    snprintf(buf, sizeof buf, "<p>%g test images, PGD with a random start, %g steps of eps/4. ", n, steps);
    jem_jw_raw(h, buf);
    if (d) {
        snprintf(buf, sizeof buf, "Defence on the first %g: SGLD purification (%g steps, %g chains, averaged "
                 "logits), attacked with BPDA + EOT (%g draws) and by transfer; the defended column is the "
                 "per-image worst case.", dn, st, ch, eot);
        jem_jw_raw(h, buf);
    }
    jem_jw_raw(h, "</p><table><tr><th>epsilon</th><th>undefended</th>");
    if (d) jem_jw_raw(h, "<th>transfer</th><th>BPDA+EOT</th><th>defended (worst)</th>");
    jem_jw_raw(h, "</tr>");
    for (size_t i = 0; eps && i < eps->n; i++) {
        jem_jw_raw(h, "<tr>");
        cell(h, jem_json_at(eps, i), -1);
        cell(h, jem_json_at(u, i), 3);
        if (d) {
            cell(h, jem_json_at(jem_json_get(d, "transfer"), i), 3);
            cell(h, jem_json_at(jem_json_get(d, "bpda_eot"), i), 3);
            cell(h, jem_json_at(jem_json_get(d, "worst"), i), 3);
        }
        jem_jw_raw(h, "</tr>");
    }
    jem_jw_raw(h, "</table>");
}

typedef struct {
    int quick, limit, an, dn, steps, dsteps, dchains, eot, no_def;
} report_args;

static int report_check(cli_ctx *cx, void *ud)
{
    report_args *r = ud;
    const cli_spec *sp = cx->spec;
    if (r->no_def) {
        static const char *const def_only[] = {"defence-n", "defence-steps", "defence-chains", "eot"};
        for (int i = 0; i < 4; i++)
            if (cli_given(sp, def_only[i])) return cli_usage_error("report", "--%s and --no-defence exclude each other",
                                                                   def_only[i]);
    }
    /* --quick sets the sizes that were not given */
    if (r->quick) {
        struct { const char *name; int *v, q; } qs[] = {
            {"limit", &r->limit, 300}, {"attack-n", &r->an, 50}, {"defence-n", &r->dn, 10}, {"steps", &r->steps, 3},
            {"defence-steps", &r->dsteps, 2}, {"defence-chains", &r->dchains, 1}, {"eot", &r->eot, 1}};
        for (size_t i = 0; i < sizeof qs / sizeof *qs; i++)
            if (!cli_given(sp, qs[i].name)) *qs[i].v = qs[i].q;
    }
    if (r->dn > r->an)
        return cli_usage_error("report", "--defence-n %d: more than the %d images of --attack-n", r->dn, r->an);
    return 0;
}

int cmd_report(int argc, char **argv)
{
    const char *outdir = "report";
    report_args ra = {.an = 500, .dn = 100, .steps = 20, .dsteps = 5, .dchains = 2, .eot = 2};
    cli_opt opts[] = {
        {OPT("out", OPT_STR, &outdir, "output folder (report.html, report.json, pictures)"), .flags = OPT_OUT_DIR},
        {OPT("limit", OPT_INT, &ra.limit, "images per data set for calibration and OOD (0: all)"), ATLEAST(0)},
        {OPT("attack-n", OPT_INT, &ra.an, "test images attacked"), RANGE(1, 1 << 30)},
        {OPT("defence-n", OPT_INT, &ra.dn, "test images attacked through the SGLD defence"), RANGE(1, 1 << 30)},
        {OPT("steps", OPT_INT, &ra.steps, "PGD steps"), RANGE(1, 100000)},
        {OPT("defence-steps", OPT_INT, &ra.dsteps, "SGLD purification steps"), RANGE(0, 100000)},
        {OPT("defence-chains", OPT_INT, &ra.dchains, "purification chains per image"), RANGE(1, 1000)},
        {OPT("eot", OPT_INT, &ra.eot, "EOT draws per gradient"), RANGE(1, 1000)},
        {OPT("no-defence", OPT_FLAG, &ra.no_def, "skip the defended attacks")},
        {OPT("quick", OPT_FLAG, &ra.quick, "a small, fast run (tests): 300 images, 50 attacked, 3 steps (options "
                                          "given keep their values)")},
        CLI_END};
    const cli_spec sp = {.name = "report", .usage = "--model CKPT [--out DIR] [options]", .opts = opts,
                         .model = CLI_MODEL_CKPT, .threads = 1, .check = report_check, .ud = &ra};
    cli_ctx cx;
    int r = cli_begin(&cx, &sp, argc, argv);
    if (r >= 0) return r;
    const char *model = cx.model;
    const int threads = cx.threads, limit = ra.limit, an = ra.an, dn = ra.dn, steps = ra.steps, dsteps = ra.dsteps;
    const int dchains = ra.dchains, eot = ra.eot, no_def = ra.no_def;
    cli_end(&cx); /* the steps load the checkpoint themselves */
    if (mkdir(outdir, 0777) && errno != EEXIST) {
        fprintf(stderr, "jem report: error: %s: cannot create: %s\n", outdir, strerror(errno));
        return 1;
    }
    char p[12][1100], a[24][32];
    snprintf(p[0], sizeof p[0], "%s/eval.json", outdir);
    snprintf(p[1], sizeof p[1], "%s/reliability.png", outdir);
    snprintf(p[2], sizeof p[2], "%s/ood.json", outdir);
    snprintf(p[3], sizeof p[3], "%s/ood-hist.png", outdir);
    snprintf(p[4], sizeof p[4], "%s/ood-roc.png", outdir);
    snprintf(p[5], sizeof p[5], "%s/attack-linf.json", outdir);
    snprintf(p[6], sizeof p[6], "%s/attack-linf.png", outdir);
    snprintf(p[7], sizeof p[7], "%s/attack-l2.json", outdir);
    snprintf(p[8], sizeof p[8], "%s/attack-l2.png", outdir);
    snprintf(p[9], sizeof p[9], "%s/report.html", outdir);
    snprintf(p[10], sizeof p[10], "%s/report.json", outdir);
    snprintf(a[0], sizeof a[0], "%d", threads);
    snprintf(a[1], sizeof a[1], "%d", limit);
    snprintf(a[2], sizeof a[2], "%d", an);
    snprintf(a[3], sizeof a[3], "%d", dn);
    snprintf(a[4], sizeof a[4], "%d", steps);
    snprintf(a[5], sizeof a[5], "%d", dsteps);
    snprintf(a[6], sizeof a[6], "%d", dchains);
    snprintf(a[7], sizeof a[7], "%d", eot);
    char *m = (char *)model;
    char *ev[] = {"jem", "eval", "--model", m, "--data", "fmnist:test", "--limit", a[1], "--reliability", p[1],
                  "--threads", a[0], "--json", NULL};
    char *od[] = {"jem", "ood", "--model", m, "--limit", a[1], "--hist", p[3], "--roc", p[4], "--threads", a[0],
                  "--json", NULL};
    char *al[] = {"jem", "attack", "--model", m, "--n", a[2], "--norm", "linf", "--steps", a[4], "--curve", p[6],
                  "--defence", "sgld", "--defence-n", a[3], "--defence-steps", a[5], "--defence-chains", a[6],
                  "--eot", a[7], "--threads", a[0], "--json", NULL};
    char *a2[] = {"jem", "attack", "--model", m, "--n", a[2], "--norm", "l2", "--steps", a[4], "--curve", p[8],
                  "--defence", "sgld", "--defence-n", a[3], "--defence-steps", a[5], "--defence-chains", a[6],
                  "--eot", a[7], "--threads", a[0], "--json", NULL};
    if (no_def) { al[12] = NULL; a2[12] = NULL; }
    struct { char **args; const char *out, *what; } parts[4] = {
        {ev, p[0], "calibration"}, {od, p[2], "out-of-distribution"}, {al, p[5], "L-inf attacks"},
        {a2, p[7], "L2 attacks"}};
    int failed = 0;
    for (int i = 0; i < 4; i++) {
        fprintf(stderr, "jem report: %s ...\n", parts[i].what);
        if (run_self(parts[i].args, parts[i].out)) {
            fprintf(stderr, "jem report: error: the %s step failed\n", parts[i].what);
            failed = 1;
        }
    }
    char *te = NULL, *to = NULL, *tl = NULL, *t2 = NULL;
    jem_json *je = load_json(p[0], &te), *jo = load_json(p[2], &to), *jl = load_json(p[5], &tl);
    jem_json *j2 = load_json(p[7], &t2);
    jem_jw h;
    jem_jw_init(&h);
    jem_jw_raw(&h, "<!DOCTYPE html><html><head><meta charset=utf-8><title>jem report</title><style>"
                   "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
                   "table{border-collapse:collapse;margin:1em 0}"
                   "td,th{border:1px solid #bbb;padding:4px 10px;text-align:right}"
                   "th{background:#eee}td:first-child,th:first-child{text-align:left}img{max-width:100%;margin:.5em 0}"
                   ".missing{color:#a00}code{background:#f4f4f4;padding:1px 4px}</style></head><body>"
                   "<h1>jem report</h1><p>Model <code>");
    html_text(&h, model);
    jem_jw_raw(&h, "</code>. Higher OOD scores mean more in-distribution; epsilons are on the [0, 1] pixel "
                   "scale.</p>");
    /* calibration */
    jem_jw_raw(&h, "<h2>Accuracy and calibration (Fashion-MNIST test)</h2>");
    if (je) {
        const jem_json *ts = jem_json_get(je, "temperature_scaling");
        jem_jw_raw(&h, "<table><tr><th>metric</th><th>as trained</th><th>temperature scaled</th></tr>");
        const char *keys[6] = {"accuracy", "nll", "brier", "ece", "mce", "ace"};
        const char *names[6] = {"accuracy", "NLL", "Brier", "ECE (15 bins)", "MCE", "adaptive ECE"};
        for (int k = 0; k < 6; k++) {
            jem_jw_raw(&h, "<tr><td>");
            jem_jw_raw(&h, names[k]);
            jem_jw_raw(&h, "</td>");
            cell(&h, jem_json_get(je, keys[k]), 4);
            cell(&h, k == 0 ? jem_json_get(je, keys[k]) : jem_json_get(ts, keys[k]), 4);
            jem_jw_raw(&h, "</tr>");
        }
        jem_jw_raw(&h, "<tr><td>ECE (20 bins)</td>");
        cell(&h, jem_json_get(je, "ece20"), 4);
        jem_jw_raw(&h, "<td>-</td></tr><tr><td>temperature</td><td>1</td>");
        cell(&h, jem_json_get(ts, "T"), 3);
        jem_jw_raw(&h, "</tr></table>");
    } else {
        jem_jw_raw(&h, "<p class=missing>(calibration step failed)</p>");
    }
    emit_png(&h, p[1], "reliability diagram");
    /* OOD */
    jem_jw_raw(&h, "<h2>Out-of-distribution detection (in: Fashion-MNIST test)</h2>");
    if (jo) {
        jem_jw_raw(&h, "<table><tr><th>OOD set</th><th>score</th><th>AUROC</th><th>AUPR-in</th><th>AUPR-out</th>"
                       "<th>FPR95</th></tr>");
        const jem_json *sets = jem_json_get(jo, "sets");
        for (size_t i = 0; sets && i < sets->n; i++) {
            const jem_json *set = jem_json_at(sets, i);
            int first = 1;
            for (size_t k = 0; k < set->n; k++) {
                const jem_json *sc = jem_json_at(set, k);
                if (sc->type != JEM_JSON_OBJECT) continue; /* "n" */
                jem_jw_raw(&h, "<tr><td>");
                if (first) html_text(&h, set->key);
                first = 0;
                jem_jw_raw(&h, "</td><td>");
                html_text(&h, sc->key);
                jem_jw_raw(&h, "</td>");
                cell(&h, jem_json_get(sc, "auroc"), 4);
                cell(&h, jem_json_get(sc, "aupr_in"), 4);
                cell(&h, jem_json_get(sc, "aupr_out"), 4);
                cell(&h, jem_json_get(sc, "fpr95"), 4);
                jem_jw_raw(&h, "</tr>");
            }
        }
        jem_jw_raw(&h, "</table>");
    } else {
        jem_jw_raw(&h, "<p class=missing>(OOD step failed)</p>");
    }
    emit_png(&h, p[3], "score histograms");
    emit_png(&h, p[4], "ROC curves");
    /* attacks */
    jem_jw_raw(&h, "<h2>Adversarial robustness</h2>");
    attack_table(&h, jl, "PGD L-inf");
    emit_png(&h, p[6], "robust accuracy, L-inf");
    attack_table(&h, j2, "PGD L2");
    emit_png(&h, p[8], "robust accuracy, L2");
    jem_jw_raw(&h, "</body></html>\n");
    jem_status s = jem_jw_status(&h);
    if (!s) s = jem_write_file_atomic(p[9], jem_jw_cstr(&h), jem_jw_len(&h));
    jem_jw_free(&h);
    /* report.json: the parts side by side */
    jem_jw j;
    jem_jw_init(&j);
    jem_jw_obj_begin(&j);
    jem_jw_kstr(&j, "model", model);
    const char *nm[4] = {"calibration", "ood", "attack_linf", "attack_l2"};
    char *tx[4] = {te, to, tl, t2};
    jem_json *pj[4] = {je, jo, jl, j2};
    for (int i = 0; i < 4; i++) {
        jem_jw_key(&j, nm[i]);
        if (pj[i]) {
            /* the part's own JSON, verbatim (one line) */
            size_t len = strlen(tx[i]);
            while (len && (tx[i][len - 1] == '\n' || tx[i][len - 1] == ' ')) len--;
            jem_jw_json(&j, tx[i], len);
        } else {
            jem_jw_null(&j);
        }
    }
    jem_jw_obj_end(&j);
    if (!s) s = jem_jw_status(&j);
    if (!s) s = jem_write_file_atomic(p[10], jem_jw_cstr(&j), jem_jw_len(&j));
    jem_jw_free(&j);
    for (int i = 0; i < 4; i++) { jem_json_free(pj[i]); free(tx[i]); }
    if (s) return cli_fail("report", s);
    fprintf(stderr, "jem report: wrote %s and %s\n", p[9], p[10]);
    return failed ? 1 : 0;
}
