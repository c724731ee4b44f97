/* ebm.h: internals of the replay buffer (private to the library and its
 * tests): the informative initialisation fitted by jem_buffer_fit. */
#ifndef JEM_EBM_H
#define JEM_EBM_H

#include "jem.h"

/* Dimension letters: K classes, D values per image (C * H * W). */
struct jem_buffer_prior {
    float *mu;   /* (K, D) per-class mean */
    float *sd;   /* (K, D) per-class standard deviation (diagonal) */
    float *chol; /* (K, D, D) lower Cholesky factors of the covariances, or NULL */
};

#endif
