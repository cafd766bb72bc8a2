/* reload: what SIGHUP re-applies at run time.
 *
 * Modules that can change a setting without a restart (TLS certificate,
 * limits, origins, log level) register a hook once at start; on SIGHUP the
 * application re-reads the configuration and calls every hook, on the loop
 * thread, with the old and the new configuration. A hook applies what it
 * can, logs what changed, and returns 0, or -1 after logging why it kept the
 * old setting (a bad certificate must not take the server down). */
#ifndef CHATD_RELOAD_H
#define CHATD_RELOAD_H

#include "core/config.h"

typedef int (*reload_fn)(const config *old_cfg, const config *new_cfg);

/* Registers fn under a name for the log (at most 16 hooks). */
void reload_register(const char *name, reload_fn fn);
/* Calls every hook in registration order; returns how many failed. */
int reload_run(const config *old_cfg, const config *new_cfg);

#endif
