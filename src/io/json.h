/* json.h: the JSON writer and parser are public (include/jem/json.h); this
 * internal name is kept for the library's files. */
#ifndef JEM_IO_JSON_H
#define JEM_IO_JSON_H

#include "jem/json.h"

#endif
