/* quiet: noisy seconds on a shared machine; see quiet.h. */
#include "quiet.h"
#include "bench.h"
#include "report.h"

#include <math.h>

void cpu_snap_take(cpu_snap *s, int gen_pid, const uint64_t *count)
{
    double steal;
    s->t = uv_hrtime();
    if (machine_cpu(&s->busy, &steal) != 0)
        s->busy = -1;
    s->self = self_cpu();
    s->server = g_opt.server_pid > 0 ? proc_cpu(g_opt.server_pid) : -1;
    s->own = 0;
    for (int i = 0; i < g_opt.nwatch; i++) {
        double w = proc_cpu(g_opt.watch_pid[i]);
        if (w > 0)
            s->own += w;
    }
    if (gen_pid > 0) {
        double g = proc_cpu(gen_pid);
        if (g > 0)
            s->own += g;
    }
    s->count = count ? *count : 0;
}

double cpu_snap_other(const cpu_snap *a, const cpu_snap *b)
{
    double secs = (double)(b->t - a->t) / 1e9;
    if (secs <= 0 || a->busy < 0 || b->busy < 0 || a->server < 0 || b->server < 0)
        return -1;
    double o =
        ((b->busy - a->busy) - (b->self - a->self) - (b->server - a->server) - (b->own - a->own)) /
        secs;
    return o < 0 ? 0 : o;
}

void quiet_init(quiet_acc *q, double limit)
{
    *q = (quiet_acc){.limit = limit};
}

bool quiet_add(quiet_acc *q, const cpu_snap *a, const cpu_snap *b, double msgs, double secs,
               int verdict, bool noisy)
{
    if (secs <= 0)
        secs = (double)(b->t - a->t) / 1e9;
    double other = cpu_snap_other(a, b);
    bool drop;
    if (verdict >= 0)
        drop = verdict == 1;
    else
        drop = q->limit >= 0 && (noisy || other > q->limit);
    if (other > q->other_max)
        q->other_max = other;
    q->spans++;
    if (a->server >= 0 && b->server >= 0 && q->server_s_all >= 0)
        q->server_s_all += b->server - a->server;
    else
        q->server_s_all = -1;
    if (drop) {
        q->dropped++;
        q->secs_dropped += secs;
        q->msgs_dropped += msgs;
    } else {
        q->secs += secs;
        q->msgs += msgs;
        if (a->server >= 0 && b->server >= 0 && q->server_s >= 0)
            q->server_s += b->server - a->server;
        else
            q->server_s = -1;
    }
    q->last_dropped = drop;
    return !drop;
}

double quiet_rate(const quiet_acc *q)
{
    if (q->secs > 0)
        return q->msgs / q->secs;
    double s = q->secs + q->secs_dropped;
    return s > 0 ? (q->msgs + q->msgs_dropped) / s : 0;
}

void report_quiet(const quiet_acc *q)
{
    double all_s = q->secs + q->secs_dropped;
    report_num("rate_all", q->dropped ? "rate, every span" : NULL,
               all_s > 0 ? (q->msgs + q->msgs_dropped) / all_s : 0);
    report_num("secs_kept", NULL, q->secs);
    report_num("secs_dropped", q->dropped ? "noisy s dropped" : NULL, q->secs_dropped);
    report_int("spans", NULL, q->spans);
    report_int("spans_dropped", NULL, q->dropped);
    if (q->limit >= 0)
        report_num("quiet_cores", NULL, q->limit);
    report_num("other_max", NULL, q->other_max);
    /* the fairest figure on a shared machine: what one second of the server's CPU bought */
    if (q->server_s > 0 && q->secs > 0)
        report_num("msgs_per_server_cpu_s", "messages per server cpu s", q->msgs / q->server_s);
    else if (q->server_s_all > 0)
        report_num("msgs_per_server_cpu_s", "messages per server cpu s",
                   (q->msgs + q->msgs_dropped) / q->server_s_all);
    if (q->secs <= 0 && q->dropped)
        report_str("quiet", "quiet", "every span was noisy: rate is over all of them");
}
