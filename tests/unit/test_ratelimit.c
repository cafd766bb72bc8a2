/* Unit tests for the fixed-window rate limiter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/ratelimit.h"

static bool hit(ratelimit *rl, const char *key, int64_t now)
{
    return ratelimit_hit(rl, key, strlen(key), now);
}

static void test_limit_within_window(void **state)
{
    (void)state;
    ratelimit *rl = ratelimit_new(3, 1000, 100);
    assert_true(hit(rl, "a", 0));
    assert_true(hit(rl, "a", 10));
    assert_true(ratelimit_allows(rl, "a", 1, 20));
    assert_true(hit(rl, "a", 20));
    assert_false(ratelimit_allows(rl, "a", 1, 30));
    assert_false(hit(rl, "a", 30));
    assert_false(hit(rl, "a", 999));
    /* other keys are counted apart */
    assert_true(hit(rl, "b", 999));
    /* the window started at 0 ends at 1000 */
    assert_true(hit(rl, "a", 1000));
    ratelimit_free(rl);
}

static void test_refused_events_are_not_counted(void **state)
{
    (void)state;
    ratelimit *rl = ratelimit_new(1, 1000, 100);
    assert_true(hit(rl, "k", 0));
    for (int i = 0; i < 50; i++)
        assert_false(hit(rl, "k", 500 + i));
    /* refusals did not extend the window: it still ends 1000 ms after the first hit */
    assert_true(hit(rl, "k", 1000));
    ratelimit_free(rl);
}

static void test_expired_keys_are_dropped_without_scan(void **state)
{
    (void)state;
    ratelimit *rl = ratelimit_new(5, 100, 1000);
    char key[16];
    for (int i = 0; i < 500; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        assert_true(hit(rl, key, i / 10)); /* 500 keys within 50 ms */
    }
    assert_int_equal(ratelimit_size(rl), 500);
    /* at t=125 the keys made before t=25 have expired; one hit drops them */
    assert_true(hit(rl, "late", 125));
    assert_int_equal(ratelimit_size(rl), 500 - 260 + 1);
    ratelimit_free(rl);
}

static void test_full_table_evicts_the_oldest(void **state)
{
    (void)state;
    ratelimit *rl = ratelimit_new(1, 60000, 3);
    assert_true(hit(rl, "a", 0));
    assert_true(hit(rl, "b", 1));
    assert_true(hit(rl, "c", 2));
    assert_true(hit(rl, "d", 3)); /* evicts a */
    assert_int_equal(ratelimit_size(rl), 3);
    assert_true(hit(rl, "a", 4));  /* a starts over */
    assert_false(hit(rl, "c", 5)); /* c still remembered */
    ratelimit_free(rl);
}

static void test_reset_and_zero_limit(void **state)
{
    (void)state;
    ratelimit *rl = ratelimit_new(1, 1000, 10);
    assert_true(hit(rl, "x", 0));
    assert_false(hit(rl, "x", 1));
    ratelimit_reset(rl, "x", 1);
    assert_true(hit(rl, "x", 2));
    ratelimit_set_limit(rl, 0);
    assert_false(hit(rl, "y", 3));
    assert_int_equal(ratelimit_size(rl), 1); /* a refused new key records nothing */
    ratelimit_free(rl);
}

static void test_clock_step_back(void **state)
{
    (void)state;
    ratelimit *rl = ratelimit_new(1, 1000, 10);
    assert_true(hit(rl, "x", 5000));
    assert_false(hit(rl, "x", 4000)); /* earlier time: still the same window */
    assert_true(hit(rl, "x", 6000));
    ratelimit_free(rl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limit_within_window),
        cmocka_unit_test(test_refused_events_are_not_counted),
        cmocka_unit_test(test_expired_keys_are_dropped_without_scan),
        cmocka_unit_test(test_full_table_evicts_the_oldest),
        cmocka_unit_test(test_reset_and_zero_limit),
        cmocka_unit_test(test_clock_step_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
