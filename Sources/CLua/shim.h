#ifndef CLUA_SHIM_H
#define CLUA_SHIM_H
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
#endif
