// The C ABI over the C++ library. This is the one place where internal
// statuses become C status codes.
#include "crlib/crlib.h"

extern "C" {

unsigned crlib_version(void) { return CRLIB_VERSION_NUMBER; }

const char* crlib_version_string(void) { return CRLIB_VERSION_STRING; }

}  // extern "C"
