/* Composed energies: the text form (valid, invalid, canonical round trip),
 * the model list, binding checks, and the energy and its input gradient
 * against the single-model energies and finite differences. */
#include "jem.h"
#include "test.h"

#include <math.h>

static void check_parse(void)
{
    jem_compose c;
    ASSERT_OK(jem_compose_parse("m1:class=5:1,m1:class=7:-1", &c));
    ASSERT_EQ_INT(c.n_terms, 2);
    ASSERT(!strcmp(c.terms[0].model, "m1") && c.terms[0].cls == 5 && c.terms[0].weight == 1.0);
    ASSERT(!strcmp(c.terms[1].model, "m1") && c.terms[1].cls == 7 && c.terms[1].weight == -1.0);
    ASSERT_OK(jem_compose_parse(" a_1 : class=0 , b-2:uncond:0.25,c:-1.5e-1,  d ", &c));
    ASSERT_EQ_INT(c.n_terms, 4);
    ASSERT(!strcmp(c.terms[0].model, "a_1") && c.terms[0].cls == 0 && c.terms[0].weight == 1.0);
    ASSERT(!strcmp(c.terms[1].model, "b-2") && c.terms[1].cls == -1 && c.terms[1].weight == 0.25);
    ASSERT(!strcmp(c.terms[2].model, "c") && c.terms[2].cls == -1 && c.terms[2].weight == -0.15);
    ASSERT(!strcmp(c.terms[3].model, "d") && c.terms[3].cls == -1 && c.terms[3].weight == 1.0);
    /* the canonical form parses back to the same terms and prints the same */
    char buf[512], buf2[512];
    int n = jem_compose_format(&c, buf, sizeof buf);
    ASSERT(n > 0 && (size_t)n < sizeof buf);
    ASSERT(!strcmp(buf, "a_1:class=0:1,b-2:uncond:0.25,c:uncond:-0.14999999999999999,d:uncond:1"));
    jem_compose c2;
    ASSERT_OK(jem_compose_parse(buf, &c2));
    jem_compose_format(&c2, buf2, sizeof buf2);
    ASSERT(!strcmp(buf, buf2));
    ASSERT(c2.terms[2].weight == c.terms[2].weight);
    /* a short buffer: the length it needs, a terminated prefix */
    char tiny[8];
    ASSERT_EQ_INT(jem_compose_format(&c, tiny, sizeof tiny), n);
    ASSERT_EQ_INT(strlen(tiny), 7);
    /* JEM_COMPOSE_MAX terms fit, one more does not */
    char many[1024] = "";
    for (int i = 0; i < JEM_COMPOSE_MAX; i++) strcat(many, i ? ",m1" : "m1");
    ASSERT_OK(jem_compose_parse(many, &c));
    strcat(many, ",m1");
    ASSERT_ERR(jem_compose_parse(many, &c), JEM_ERR_ARG);
    ASSERT_STR_CONTAINS(jem_last_error(), "more than 16 terms");
    /* errors name the term and the piece at fault */
    const struct {
        const char *spec, *msg;
    } bad[] = {
        {"", "term 1"},
        {"m1,", "term 2"},
        {",m1", "term 1"},
        {"1m", "'1m' is not a model name"},
        {"m 1", "'m 1' is not a model name"},
        {"m1:class=", "the class must be a number"},
        {"m1:class=-3", "the class must be a number"},
        {"m1:class=99999999", "the class must be a number"},
        {"m1:class=2x", "the class must be a number"},
        {"m1:0", "non-zero"},
        {"m1:1e400", "finite"},
        {"m1:nan", "neither class=K"},
        {"m1:inf", "neither class=K"},
        {"m1:-inf", "finite"},
        {"m1:2e6", "at most 1e6"},
        {"m1:1:2", "a second weight"},
        {"m1:1:class=3", "right after the model name"},
        {"m1:class=1:uncond", "right after the model name"},
        {"m1:klass=1", "neither class=K"},
        {"m1::1", "neither class=K"},
        {"m1:1.5x", "neither class=K"},
        {"m1:class=3:", "neither class=K"},
        {"abcdefghijklmnopqrstuvwxyz0123456", "not a model name"},
        {"m1\x01", "not a model name"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        jem_status s = jem_compose_parse(bad[i].spec, &c);
        ASSERT_MSG(s == JEM_ERR_ARG, "'%s' was accepted", bad[i].spec);
        ASSERT_STR_CONTAINS(jem_last_error(), bad[i].msg);
    }
    ASSERT_ERR(jem_compose_parse(NULL, &c), JEM_ERR_ARG);
}

static void check_models(void)
{
    jem_model_list l;
    ASSERT_OK(jem_model_list_parse("m1=models/a.safetensors, m2 =/tmp/b c.st", &l));
    ASSERT_EQ_INT(l.n, 2);
    ASSERT(!strcmp(l.name[0], "m1") && !strcmp(l.path[0], "models/a.safetensors"));
    ASSERT(!strcmp(l.name[1], "m2") && !strcmp(l.path[1], "/tmp/b c.st"));
    const char *bad[] = {"", "m1", "m1=", "=x", "m1=a,m1=b", "m1=a,", "1=a", "m1=a,,m2=b"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ASSERT_MSG(jem_model_list_parse(bad[i], &l) == JEM_ERR_ARG, "models '%s' accepted", bad[i]);
    }
    ASSERT_STR_CONTAINS((jem_model_list_parse("m1=a,m1=b", &l), jem_last_error()), "given twice");
}

static jem_net *tiny_net(const char *desc, uint64_t seed)
{
    jem_arch a;
    if (jem_arch_parse(desc, "t", &a)) return NULL;
    jem_net *net = NULL;
    if (jem_net_create(&a, &net)) return NULL;
    jem_rng r;
    jem_rng_seed(&r, seed, 0);
    jem_net_init(net, &r);
    return net;
}

static void check_energy(void)
{
    const char *desc = "input = 1x6x6\nclasses = 4\nstem = 3\nblocks = 4/2\nactivation = silu\n";
    jem_net *na = tiny_net(desc, 4), *nb = tiny_net(desc, 5);
    jem_net *nc = tiny_net("input = 1x5x5\nclasses = 4\nstem = 3\nblocks = 4/2\n", 6);
    ASSERT(na && nb && nc);
    if (!na || !nb || !nc) return;
    jem_compose c;
    ASSERT_OK(jem_compose_parse("a:class=1:0.5, a:class=3:-1, b:2, a:-0.25", &c));
    const char *names[3] = {"a", "b", "c"};
    jem_net *nets[3] = {na, nb, nc};
    ASSERT_OK(jem_compose_bind(&c, 2, names, nets));
    ASSERT_EQ_INT(c.n_models, 2);
    enum { B = 3, D = 36 };
    float x[B * D], g[B * D], lp[B];
    jem_rng r;
    jem_rng_seed(&r, 9, 0);
    for (int i = 0; i < B * D; i++) x[i] = 2 * jem_rng_uniform(&r) - 1;
    ASSERT_OK(jem_compose_energy(&c, x, B, NULL, lp, g));
    /* against the single-model energies */
    float la[B * 4], lb[B * 4], ga[B * D], gb[B * D], g1[B * D], g3[B * D], l1[B], l3[B], lsa[B], lsb[B];
    int32_t y1[B] = {1, 1, 1}, y3[B] = {3, 3, 3};
    ASSERT_OK(jem_net_forward(na, x, B, la));
    ASSERT_OK(jem_net_forward(nb, x, B, lb));
    ASSERT_OK(jem_net_energy(na, x, B, y1, l1, g1));
    ASSERT_OK(jem_net_energy(na, x, B, y3, l3, g3));
    ASSERT_OK(jem_net_energy(na, x, B, NULL, lsa, ga));
    ASSERT_OK(jem_net_energy(nb, x, B, NULL, lsb, gb));
    double worst = 0;
    for (int b = 0; b < B; b++) {
        double want = 0.5 * la[b * 4 + 1] - la[b * 4 + 3] + 2 * lsb[b] - 0.25 * lsa[b];
        ASSERT_NEAR(lp[b], want, 1e-4 * (1 + fabs(want)));
        for (int i = 0; i < D; i++) {
            int k = b * D + i;
            double gw = 0.5 * g1[k] - g3[k] + 2 * gb[k] - 0.25 * ga[k];
            worst = fmax(worst, fabs(g[k] - gw) / (fabs(gw) + 1e-3));
        }
    }
    ASSERT_MSG(worst < 1e-4, "composed gradient vs the sum of the experts' gradients: %.3g", worst);
    /* finite differences of the composed log density, in double */
    worst = 0;
    for (int i = 0; i < B * D; i += 5) {
        float keep = x[i], lpp[B], lpm[B];
        const float h = 1e-2f;
        x[i] = keep + h;
        ASSERT_OK(jem_compose_energy(&c, x, B, NULL, lpp, NULL));
        x[i] = keep - h;
        ASSERT_OK(jem_compose_energy(&c, x, B, NULL, lpm, NULL));
        x[i] = keep;
        double fd = ((double)lpp[i / D] - lpm[i / D]) / (2.0 * h);
        worst = fmax(worst, fabs(fd - g[i]) / (fabs(fd) + 1e-2));
    }
    ASSERT_MSG(worst < 2e-2, "composed gradient vs finite differences: %.3g", worst);
    /* labels are refused, NULL or negative labels are not */
    int32_t yneg[B] = {-1, -1, -1}, ypos[B] = {-1, 2, -1};
    ASSERT_OK(jem_compose_energy(&c, x, B, yneg, lp, g));
    ASSERT_ERR(jem_compose_energy(&c, x, B, ypos, lp, g), JEM_ERR_ARG);
    /* HMC runs on it */
    jem_hmc_cfg hc;
    jem_hmc_defaults(&hc);
    hc.warmup = 5;
    hc.steps = 5;
    hc.leapfrog = 3;
    hc.bounded = 1;
    jem_hmc_stats st;
    ASSERT_OK(jem_hmc_run(jem_compose_energy, &c, x, B, D, NULL, NULL, &hc, 1, 0, NULL, NULL, &st));
    ASSERT(st.accept > 0 && st.accept <= 1);
    /* binding errors */
    jem_compose e;
    ASSERT_OK(jem_compose_parse("a:class=4", &e));
    ASSERT_ERR(jem_compose_bind(&e, 2, names, nets), JEM_ERR_ARG);
    ASSERT_STR_CONTAINS(jem_last_error(), "class 4 of model 'a', which has 4 classes");
    ASSERT_OK(jem_compose_parse("a, z", &e));
    ASSERT_ERR(jem_compose_bind(&e, 3, names, nets), JEM_ERR_ARG);
    ASSERT_STR_CONTAINS(jem_last_error(), "'z'");
    ASSERT_OK(jem_compose_parse("a, c:class=1", &e));
    ASSERT_ERR(jem_compose_bind(&e, 3, names, nets), JEM_ERR_SHAPE);
    ASSERT_STR_CONTAINS(jem_last_error(), "1x5x5");
    jem_compose unbound;
    ASSERT_OK(jem_compose_parse("a", &unbound));
    ASSERT_ERR(jem_compose_energy(&unbound, x, B, NULL, lp, g), JEM_ERR_ARG);
    jem_net_free(na);
    jem_net_free(nb);
    jem_net_free(nc);
}

int main(void)
{
    TEST_MAIN_BEGIN("test_compose");
    check_parse();
    check_models();
    check_energy();
    return t_finish();
}
