/* dynload.h: additions of dynload's C ABI (libdynload.so) to <dlfcn.h>.
 *
 * libdynload.so exports the functions of <dlfcn.h> (dlopen, dlsym, dlvsym,
 * dlclose, dlerror, dladdr, dladdr1, dlinfo, dlmopen, dl_iterate_phdr) with
 * glibc's prototypes; include <dlfcn.h> for those. This header declares
 * what dynload adds. */
#ifndef DYNLOAD_H
#define DYNLOAD_H

#ifdef __cplusplus
extern "C" {
#endif

/* dynload's version, e.g. "0.1.0". */
const char *dynload_version(void);

/* A longer explanation of this thread's last failed dl* call: the same
 * text dlerror() gives, followed by what dynload knows about the cause
 * (the paths tried, the objects searched, the versions that exist).
 * NULL if the last dl* call of this thread succeeded. The string stays
 * valid until the next dl* call of this thread. */
const char *dynload_explain_error(void);

#ifdef __cplusplus
}
#endif

#endif /* DYNLOAD_H */
