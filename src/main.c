/* chatd: a real-time chat server. main() only reads the configuration and
 * hands over to app_run (src/app.c). cfg lives here for the whole run: every
 * module points at it, and a SIGHUP updates it in place (config.h). */
#include <signal.h>
#include <stdio.h>
#include <uv.h>

#include "app.h"
#include "core/config.h"
#include "core/log.h"

int main(int argc, char **argv)
{
    config cfg;
    int r = config_load(&cfg, argc, argv);
    if (r != 0) {
        config_free(&cfg);
        return r > 0 ? 0 : 2;
    }
    log_set_level((enum log_level)log_level_parse(cfg.log_level));
    log_set_format((enum log_format)log_format_parse(cfg.log_format));
    signal(SIGPIPE, SIG_IGN); /* a peer closing mid-write is an error value, not a signal */
    int code = app_run(uv_default_loop(), &cfg);
    uv_loop_close(uv_default_loop());
    config_free(&cfg);
    return code;
}
