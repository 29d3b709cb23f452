/* crlib — checkpoint/restart for Linux processes. The stable C ABI.
 *
 * Contract: functions are thread-safe unless stated otherwise; strings the
 * library returns are owned by the library and live for the process. */
#ifndef CRLIB_CRLIB_H_
#define CRLIB_CRLIB_H_

#include "crlib/export.h"
#include "crlib/version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Run-time version, CRLIB_VERSION_NUMBER of the library actually loaded.
 * Compare with the compile-time CRLIB_VERSION_NUMBER to detect a mismatch. */
CRLIB_EXPORT unsigned crlib_version(void);

/* Run-time version as "MAJOR.MINOR.PATCH"; static storage, never NULL. */
CRLIB_EXPORT const char *crlib_version_string(void);

#ifdef __cplusplus
}
#endif

#endif /* CRLIB_CRLIB_H_ */
