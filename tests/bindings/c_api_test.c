/* The C ABI through the public header alone, compiled as C. */
#include <stdio.h>
#include <string.h>

#include "crlib/crlib.h"

static int failures;
#define CHECK(cond)                                              \
  do {                                                           \
    if (!(cond)) {                                               \
      fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                \
    }                                                            \
  } while (0)

int main(void) {
  char expected[32];
  snprintf(expected, sizeof(expected), "%d.%d.%d", CRLIB_VERSION_MAJOR, CRLIB_VERSION_MINOR,
           CRLIB_VERSION_PATCH);
  CHECK(crlib_version() == CRLIB_VERSION_NUMBER);
  CHECK(strcmp(crlib_version_string(), expected) == 0);
  CHECK(strcmp(crlib_version_string(), CRLIB_VERSION_STRING) == 0);
  printf("%s\n", failures ? "c_api_test: FAILED" : "c_api_test: ok");
  return failures != 0;
}
