/* chatd: a real-time chat server. main() only reads the configuration and
 * hands over to app_run (src/app.c). */
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
    signal(SIGPIPE, SIG_IGN); /* a peer closing mid-write is an error value, not a signal */
    int code = app_run(uv_default_loop(), &cfg);
    uv_loop_close(uv_default_loop());
    config_free(&cfg);
    return code;
}
