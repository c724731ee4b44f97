/* eval.h: the evaluation library's declarations live in the public header
 * include/jem/eval.h; this internal name is kept for the library's files. */
#ifndef JEM_EVAL_EVAL_H
#define JEM_EVAL_EVAL_H

#include "jem/eval.h"

/* shared by the attacks (attack.c) */
/* xa into the ball of radius eps around x0 (L-inf: norm 0, L2: 2) and the box [-1, 1] */
void jem_atk_project(float *xa, const float *x0, int D, int norm, double eps);
/* ok (B) = argmax of c's logits (lg, (B, K) scratch) equals y */
jem_status jem_atk_correct(const jem_classifier *c, const float *x, const int32_t *y, int B, float *lg, uint8_t *ok);
/* JEM_ERR_ARG naming the first label outside [0, K) */
jem_status jem_atk_labels(const int32_t *y, int n, int K);

#endif
