#ifndef CLUA_SHIM_H
#define CLUA_SHIM_H
#include <stdlib.h>
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
    size_t used;
    size_t memory_limit;       /* 0: none */
    long long instructions_left;
    long long instruction_limit; /* 0: none */
    int host_active;
    int interrupted;           /* set from another thread (atomically): stop at the next hook */
    int stopping;              /* a limit or an interruption ended the call: raise until it returns */
} CLua_Limits;

static inline void CLua_interrupt(CLua_Limits *limits) { __atomic_store_n(&limits->interrupted, 1, __ATOMIC_RELAXED); }
static inline int CLua_take_interrupt(CLua_Limits *limits) { return __atomic_exchange_n(&limits->interrupted, 0, __ATOMIC_RELAXED); }

static inline void *CLua_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    CLua_Limits *limits = (CLua_Limits *)ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        limits->used -= old;
        return NULL;
    }
    if (limits->memory_limit && !limits->host_active && nsize > old &&
        limits->used - old + nsize > limits->memory_limit) {
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

/* Counts instructions in steps of CLUA_HOOK_EVERY and raises when the budget is spent or the
 * run was interrupted. Runs only inside Lua code, so raising here never crosses Swift. Once it
 * has raised, it raises at every instruction until the host's call returns, so that a script
 * cannot catch the stop with pcall and go on. */
static inline void CLua_hook(lua_State *L, lua_Debug *ar) {
    (void)ar;
    CLua_Limits *limits = CLua_limits(L);
    if (!limits->stopping) {
        if (CLua_take_interrupt(limits)) {
            limits->stopping = 1;
        } else if (limits->instruction_limit) {
            limits->instructions_left -= CLUA_HOOK_EVERY;
            if (limits->instructions_left <= 0) limits->stopping = 2;
        }
    }
    if (limits->stopping) {
        lua_sethook(L, CLua_hook, LUA_MASKCOUNT, 1);
        if (limits->stopping == 1) luaL_error(L, "interrupted");
        luaL_error(L, "instruction limit exceeded (%I instructions)", (lua_Integer)limits->instruction_limit);
    }
}

/* Charges a new coroutine for the instructions it may run before its first hook, so that
 * short-lived coroutines cannot multiply the budget. Wraps coroutine.create and wrap. */
static inline int CLua_charge_coroutine(lua_State *L) {
    CLua_Limits *limits = CLua_limits(L);
    if (limits->instruction_limit) {
        limits->instructions_left -= CLUA_HOOK_EVERY;
        if (limits->instructions_left <= 0) {
            limits->stopping = 2;
            return luaL_error(L, "instruction limit exceeded (%I instructions)", (lua_Integer)limits->instruction_limit);
        }
    }
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
