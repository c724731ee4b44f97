/* ood_detect.h: the detectors' declarations live in the public header
 * include/jem/ood.h; this internal name is kept for the library's files. */
#ifndef JEM_EVAL_OOD_DETECT_H
#define JEM_EVAL_OOD_DETECT_H

#include "jem/ood.h"

#endif
