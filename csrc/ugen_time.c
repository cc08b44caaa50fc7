/*
 * ugen_time.c -- monotonic and wall clocks, EINTR-safe sleep.
 */
#include <errno.h>
#include <time.h>

#include "ugen.h"

double ugen_time_monotonic(void)
{
  struct timespec ts;

  if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
    return 0.0; /* CLOCK_MONOTONIC is mandatory on every supported system */
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* core.now() -> monotonic seconds */
static int ugen_time_now(lua_State *L)
{
  lua_pushnumber(L, (lua_Number)ugen_time_monotonic());
  return 1;
}

/* core.time() -> seconds since the epoch (float) */
static int ugen_time_time(lua_State *L)
{
  struct timespec ts;

  if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
    return luaL_error(L, "clock_gettime(CLOCK_REALTIME) failed");
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  return 1;
}

/* core.sleep(seconds): blocks; resumes after signals until the full time
 * has passed. */
static int ugen_time_sleep(lua_State *L)
{
  lua_Number s = luaL_checknumber(L, 1);
  struct timespec req, rem;

  luaL_argcheck(L, s >= 0 && s <= 1e9, 1, "must be between 0 and 1e9 seconds");
  req.tv_sec = (time_t)s; /* s >= 0: truncation is floor */
  req.tv_nsec = (long)((s - (lua_Number)req.tv_sec) * 1e9);
  if (req.tv_nsec > 999999999L)
    req.tv_nsec = 999999999L;
  while (nanosleep(&req, &rem) != 0) {
    if (errno != EINTR)
      return luaL_error(L, "nanosleep failed");
    req = rem;
  }
  return 0;
}

static const luaL_Reg ugen_time_funcs[] = {
  { "now", ugen_time_now },
  { "time", ugen_time_time },
  { "sleep", ugen_time_sleep },
  { NULL, NULL },
};

void ugen_time_register(lua_State *L)
{
  ugen_setfuncs(L, ugen_time_funcs);
}
