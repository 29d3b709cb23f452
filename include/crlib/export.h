/* Symbol visibility for the crlib shared library. Everything is hidden
 * unless marked CRLIB_EXPORT; only crlib_* functions are marked. */
#ifndef CRLIB_EXPORT_H_
#define CRLIB_EXPORT_H_

#if defined(CRLIB_BUILDING_LIBRARY) && defined(__GNUC__)
#define CRLIB_EXPORT __attribute__((visibility("default")))
#else
#define CRLIB_EXPORT
#endif

#endif /* CRLIB_EXPORT_H_ */
