/* reload: the SIGHUP hooks (see reload.h). */
#include "core/reload.h"

#include "core/log.h"

#define RELOAD_MAX 16

static struct {
    const char *name;
    reload_fn fn;
} hooks[RELOAD_MAX];
static int n_hooks;

void reload_register(const char *name, reload_fn fn)
{
    if (n_hooks == RELOAD_MAX) {
        log_error("reload: more than %d hooks; '%s' is not registered", RELOAD_MAX, name);
        return;
    }
    hooks[n_hooks].name = name;
    hooks[n_hooks].fn = fn;
    n_hooks++;
}

int reload_run(const config *old_cfg, const config *new_cfg)
{
    int failed = 0;
    for (int i = 0; i < n_hooks; i++)
        if (hooks[i].fn(old_cfg, new_cfg) < 0) {
            log_warn("reload: %s kept its old setting", hooks[i].name);
            failed++;
        }
    return failed;
}
