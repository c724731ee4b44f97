/* eval.h: the evaluation library's declarations live in the public header
 * include/jem/eval.h; this internal name is kept for the library's files. */
#ifndef JEM_EVAL_EVAL_H
#define JEM_EVAL_EVAL_H

#include "jem/eval.h"

#endif
