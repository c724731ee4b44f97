/*
 * mcmc.h: pieces shared by the samplers (internal): per-chain noise
 * streams, and one Hamiltonian Monte Carlo transition of a batch of chains
 * on a target that may carry extra per-chain values (AIS keeps the model's
 * and the base's log densities beside the tempered one).
 *
 * Dimension letters: B chains, D values per chain, A extra values per chain.
 */
#ifndef JEM_EBM_MCMC_H
#define JEM_EBM_MCMC_H

#include "jem.h"

/* The noise stream of chain b of a sampler call (seed, counter): the same
 * chain draws the same numbers whatever the thread count or batch split. */
void jem_mc_chain_rng(jem_rng *r, uint64_t seed, uint64_t counter, uint64_t salt, int b);

/* A target for the transitions: logp (B) the log density (up to a
 * constant) at x (B, D), grad (B, D) its gradient, aux (B, A) the extra
 * values (ignored when A = 0). */
typedef jem_status (*jem_mc_target)(void *ctx, const float *x, int B, double *logp, float *grad, double *aux);

typedef struct {
    int B, D, A;
    float *x;           /* (B, D) the current states (the caller's array) */
    float *g;           /* (B, D) gradient of the log target at x */
    double *lp;         /* (B) log target at x */
    double *aux;        /* (B, A) */
    float *x1, *g1, *p; /* (B, D) proposal, its gradient, momentum */
    double *lp1, *aux1; /* (B), (B, A) */
} jem_mc_chains;

/* Allocate the buffers for B chains of D values around the caller's x
 * (which must stay valid); jem_mc_free releases them (not x). */
jem_status jem_mc_alloc(jem_mc_chains *c, float *x, int B, int D, int A);
void jem_mc_free(jem_mc_chains *c);
/* Evaluate the target at the current states; a non-finite log density is
 * JEM_ERR_NONFINITE naming the chain. */
jem_status jem_mc_eval(jem_mc_chains *c, jem_mc_target f, void *ctx);

typedef struct {
    int L;           /* leapfrog steps */
    double inv_temp; /* the Hamiltonian uses logp * inv_temp */
    int bounded;     /* reflect at the walls of [lo, hi]^D */
    float lo, hi;
    const float *mask; /* (B, D) nullable: only values with mask != 0 move */
} jem_mc_hmc;

/* One HMC transition of every chain with its own step size eps[b], noise
 * from rng[b] (D normals for the momentum, then one uniform). Per chain:
 * alpha the acceptance probability min(1, exp(-dH)) (0 when the end point
 * is not finite), dh the energy error H(end) - H(start) (NaN when not
 * finite), acc 1 when the proposal was taken. Each arrays is nullable. */
jem_status jem_mc_hmc_step(jem_mc_chains *c, jem_mc_target f, void *ctx, const jem_mc_hmc *o,
                           const double *eps /* (B) */, jem_rng *rng /* (B) */, double *alpha /* (B) */,
                           double *dh /* (B) */, unsigned char *acc /* (B) */);

/* Dual averaging of the log step size towards a target acceptance
 * (Hoffman & Gelman 2014, section 3.2). */
typedef struct {
    double mu, hbar, log_eps, log_eps_bar;
    int m;
} jem_mc_dual;

void jem_mc_dual_init(jem_mc_dual *d, double eps0);
/* Feed one acceptance probability; returns the next step size. */
double jem_mc_dual_update(jem_mc_dual *d, double alpha, double target);
/* The averaged step size to use after warm-up. */
double jem_mc_dual_final(const jem_mc_dual *d);

#endif
