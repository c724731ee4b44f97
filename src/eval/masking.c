/*
 * Gradient-masking checks on tables of robust accuracy (include/jem/eval.h):
 * the signs that an attack failed rather than the model held (Athalye,
 * Carlini and Wagner 2018; Carlini et al. 2019, "On evaluating adversarial
 * robustness"): accuracy rising with the radius, an unbounded attack that
 * does not reach 0, a gradient-free attack beating the gradient attacks, and
 * a stronger run of the same attack doing better.
 */
#include "eval/eval.h"

#include <string.h>

const char *jem_check_name(int k)
{
    static const char *const names[JEM_NCHECKS] = {"monotone", "unbounded", "gradient_free", "stronger"};
    return k >= 0 && k < JEM_NCHECKS ? names[k] : "?";
}

static void verdict(jem_check *out, double value, double tol, int e)
{
    out->ran = 1;
    out->value = value;
    out->tol = tol;
    out->e = e;
    /* a hair of slack: accuracies are ratios of counts */
    out->pass = value <= tol + 1e-12;
}

void jem_check_monotone(const double *acc, int ne, double tol, jem_check *out)
{
    double rise = 0;
    int at = -1;
    for (int e = 1; e < ne; e++) {
        /* the largest rise over any smaller epsilon, not just the previous one */
        double lo = acc[0];
        for (int q = 1; q < e; q++) lo = acc[q] < lo ? acc[q] : lo;
        if (acc[e] - lo > rise) rise = acc[e] - lo, at = e;
    }
    verdict(out, rise, tol, at);
}

void jem_check_unbounded(double acc, double tol, jem_check *out) { verdict(out, acc, tol, -1); }

void jem_check_gradfree(const double *grad, const double *all, int ne, double tol, jem_check *out)
{
    double gap = 0;
    int at = -1;
    for (int e = 0; e < ne; e++)
        if (grad[e] - all[e] > gap) gap = grad[e] - all[e], at = e;
    verdict(out, gap, tol, at);
}

void jem_check_stronger(double base, double stronger, int e, double tol, jem_check *out)
{
    verdict(out, base - stronger, tol, e);
}
