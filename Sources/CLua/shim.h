#ifndef CLUA_SHIM_H
#define CLUA_SHIM_H
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <lua5.4/lua.h>
#include <lua5.4/lauxlib.h>
#include <lua5.4/lualib.h>

/* Lua's API macros, as functions Swift can call. */
static inline int CLua_pcall(lua_State *L, int nargs, int nresults, int msgh) {
    return lua_pcallk(L, nargs, nresults, msgh, 0, NULL);
}
static inline const char *CLua_tostring(lua_State *L, int idx) { return lua_tolstring(L, idx, NULL); }
static inline void CLua_pop(lua_State *L, int n) { lua_settop(L, -(n) - 1); }
static inline void CLua_newtable(lua_State *L) { lua_createtable(L, 0, 0); }
static inline int CLua_registryindex(void) { return LUA_REGISTRYINDEX; }
static inline int CLua_upvalueindex(int i) { return lua_upvalueindex(i); }
static inline int CLua_loadbuffer(lua_State *L, const char *buf, size_t size, const char *name) {
    return luaL_loadbufferx(L, buf, size, name, "t");
}
static inline void CLua_collectgarbage(lua_State *L) { lua_gc(L, LUA_GCCOLLECT, 0); }
static inline void CLua_pushglobaltable(lua_State *L) { lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS); }
static inline int CLua_isinteger(lua_State *L, int idx) { return lua_isinteger(L, idx); }
static inline void CLua_insert(lua_State *L, int idx) { lua_rotate(L, idx, 1); }
static inline void CLua_remove(lua_State *L, int idx) { lua_rotate(L, idx, -1); lua_settop(L, -2); }

/*
 * What a state may use, shared by the allocator and the instruction hook. While the host (Swift)
 * runs inside a call from Lua, `host_active` is set and allocations never fail, since a failure
 * would raise a Lua error, a longjmp, across Swift frames; the overdraft is paid back when Lua
 * runs again.
 */
typedef struct {
    size_t used;               /* the Lua heap and the host objects charged to it (CLua_charge) */
    size_t memory_limit;       /* 0: none */
    long long instructions_left;
    long long instruction_limit; /* 0: none */
    long long deadline_ns;     /* CLOCK_MONOTONIC; 0: none. Read by a watchdog thread (atomically). */
    long long time_limit_ns;   /* for the message */
    int host_active;
    int interrupted;           /* set from another thread (atomically): stop at the next hook */
    int stopping;              /* why a call is ending (CLUA_STOP_*): raise until it returns */
    char where[160];           /* "chunk:line:" where the stop began */
} CLua_Limits;

#define CLUA_STOP_INTERRUPTED 1
#define CLUA_STOP_INSTRUCTIONS 2
#define CLUA_STOP_TIME 3

static inline void CLua_interrupt(CLua_Limits *limits) { __atomic_store_n(&limits->interrupted, 1, __ATOMIC_RELAXED); }
static inline int CLua_take_interrupt(CLua_Limits *limits) { return __atomic_exchange_n(&limits->interrupted, 0, __ATOMIC_RELAXED); }
static inline int CLua_interrupt_pending(CLua_Limits *limits) { return __atomic_load_n(&limits->interrupted, __ATOMIC_RELAXED); }
static inline long long CLua_deadline(CLua_Limits *limits) { return __atomic_load_n(&limits->deadline_ns, __ATOMIC_RELAXED); }
static inline void CLua_set_deadline(CLua_Limits *limits, long long ns) { __atomic_store_n(&limits->deadline_ns, ns, __ATOMIC_RELAXED); }

static inline long long CLua_now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static inline void *CLua_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    CLua_Limits *limits = (CLua_Limits *)ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        limits->used -= old;
        return NULL;
    }
    /* A stopping call may not grow: that is how the stop is raised (CLua_raise_stop). */
    if (!limits->host_active && nsize > old &&
        (limits->stopping || (limits->memory_limit && limits->used - old + nsize > limits->memory_limit))) {
        return NULL;
    }
    void *fresh = realloc(ptr, nsize);
    if (fresh) limits->used = limits->used - old + nsize;
    return fresh;
}

static inline lua_State *CLua_newstate(CLua_Limits *limits) { return lua_newstate(CLua_alloc, limits); }

static inline CLua_Limits *CLua_limits(lua_State *L) {
    void *ud = NULL;
    lua_getallocf(L, &ud);
    return (CLua_Limits *)ud;
}

#define CLUA_HOOK_EVERY 1000

/* Starts stopping the host's call for `reason`, noting where the script was (`level` as for
 * lua_getstack: 0 in a hook, 1 in a C function Lua called). Allocates nothing. */
static inline void CLua_begin_stop(lua_State *L, int reason, int level) {
    CLua_Limits *limits = CLua_limits(L);
    if (limits->stopping) return;
    limits->stopping = reason;
    limits->where[0] = 0;
    /* The nearest Lua function's line (a host function may be called through pcall). */
    lua_Debug ar;
    for (; lua_getstack(L, level, &ar); level++) {
        if (lua_getinfo(L, "Sl", &ar) && ar.currentline > 0) {
            snprintf(limits->where, sizeof limits->where, "%s:%d: ", ar.short_src, ar.currentline);
            break;
        }
    }
}

/* Whether the call must stop now: asked to, or past its deadline (not its instruction count,
 * which only the hook counts). */
static inline int CLua_should_stop(lua_State *L, int level) {
    CLua_Limits *limits = CLua_limits(L);
    if (!limits->stopping) {
        if (CLua_take_interrupt(limits)) CLua_begin_stop(L, CLUA_STOP_INTERRUPTED, level);
        else {
            long long deadline = CLua_deadline(limits);
            if (deadline && CLua_now_ns() >= deadline) CLua_begin_stop(L, CLUA_STOP_TIME, level);
        }
    }
    return limits->stopping;
}

static inline void CLua_hook(lua_State *L, lua_Debug *ar);

/*
 * Raises the stop as a memory error, by allocating while the allocator refuses every growth of
 * a stopping call. Lua calls no message handler for a memory error (LUA_ERRMEM), so unwinding
 * runs no script code with hooks off: an error raised from inside the hook would run `xpcall`'s
 * handler there, where no hook fires. `__close` handlers run with hooks on, and the hook,
 * firing at every instruction from here on, raises again at once. The host reports the stop's
 * own message (LuaState.protectedCall), not "not enough memory".
 */
static inline int CLua_raise_stop(lua_State *L) {
    lua_sethook(L, CLua_hook, LUA_MASKCOUNT, 1);
    lua_createtable(L, 0, 0);
    /* Only reached when the host is active (its allocations never fail). */
    return luaL_error(L, "stopped");
}

/* Counts instructions in steps of CLUA_HOOK_EVERY, looks at the clock, and raises when the
 * budget is spent, the deadline has passed or the run was interrupted. Runs only inside Lua
 * code, so raising here never crosses Swift. Once it has raised, it raises at every instruction
 * until the host's call returns, so that a script cannot catch the stop with pcall and go on. */
static inline void CLua_hook(lua_State *L, lua_Debug *ar) {
    (void)ar;
    CLua_Limits *limits = CLua_limits(L);
    if (!limits->stopping && limits->instruction_limit) {
        limits->instructions_left -= CLUA_HOOK_EVERY;
        if (limits->instructions_left <= 0) CLua_begin_stop(L, CLUA_STOP_INSTRUCTIONS, 0);
    }
    if (CLua_should_stop(L, 0)) CLua_raise_stop(L);
}

/* Charges a new coroutine for the instructions it may run before its first hook, so that
 * short-lived coroutines cannot multiply the budget. Wraps coroutine.create and wrap. */
static inline int CLua_charge_coroutine(lua_State *L) {
    CLua_Limits *limits = CLua_limits(L);
    if (limits->instruction_limit && !limits->stopping) {
        limits->instructions_left -= CLUA_HOOK_EVERY;
        if (limits->instructions_left <= 0) CLua_begin_stop(L, CLUA_STOP_INSTRUCTIONS, 1);
    }
    if (CLua_should_stop(L, 1)) return CLua_raise_stop(L);
    return 0;
}

static inline void CLua_sethook(lua_State *L) { lua_sethook(L, CLua_hook, LUA_MASKCOUNT, CLUA_HOOK_EVERY); }

/*
 * Swift functions callable from Lua. The dispatcher (a Swift @convention(c) function) returns a
 * result count, or CLUA_RAISE with the error value on top of the stack; only then, with no Swift
 * frame left, does the trampoline raise it.
 */
#define CLUA_RAISE (-1)
typedef int (*CLua_Dispatch)(lua_State *L);

static inline int CLua_trampoline(lua_State *L) {
    CLua_Dispatch dispatch = (CLua_Dispatch)lua_touserdata(L, lua_upvalueindex(1));
    CLua_Limits *limits = CLua_limits(L);
    int outer = limits->host_active;
    limits->host_active = 1;
    int n = dispatch(L);
    limits->host_active = outer;
    /* A host function that waited (upd.sleep) or was cancelled ends the call as the hook would. */
    if (!outer && CLua_should_stop(L, 1)) return CLua_raise_stop(L);
    if (n == CLUA_RAISE) return lua_error(L);
    return n;
}

/* Pushes a Lua function that calls `dispatch` with `box` as its second upvalue. */
static inline void CLua_pushfunction(lua_State *L, CLua_Dispatch dispatch, void *box) {
    lua_pushlightuserdata(L, (void *)dispatch);
    lua_pushlightuserdata(L, box);
    lua_pushcclosure(L, CLua_trampoline, 2);
}

/* A message handler that adds a traceback, as lua.c's. */
static inline int CLua_traceback(lua_State *L) {
    const char *message = lua_tolstring(L, 1, NULL);
    if (message == NULL) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
        message = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, message, 1);
    return 1;
}
#endif
