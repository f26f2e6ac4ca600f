internal import CLua

extension LuaState {
    /// Creates the metatable of a userdata type: methods, `__tostring`, and `__gc` and `__close`,
    /// which release the Swift object (a closed object refuses further use).
    func defineType<T: AnyObject>(_ type: LuaObjectType<T>, methods: [String: (LuaCall) throws -> Int32],
                                  fields: [String: (T) -> LuaValue] = [:], describe: @escaping (T) -> String) {
        luaL_newmetatable(L, type.name)
        lua_createtable(L, 0, Int32(methods.count))
        for (name, body) in methods.sorted(by: { $0.key < $1.key }) { setFunction(name, body) }
        lua_setfield(L, -2, "__methods")
        installIndex(type, fields: fields)
        setFunction("__tostring") { call in
            guard let object = call.openObject(1, type) else { return call.results(.string("\(type.luaName) (closed)")) }
            return call.results(.string(describe(object)))
        }
        let release: (LuaCall) throws -> Int32 = { call in
            if let raw = luaL_testudata(call.L, 1, type.name), let pointer = raw.load(as: UnsafeRawPointer?.self) {
                raw.storeBytes(of: nil, as: UnsafeRawPointer?.self)
                let box = Unmanaged<LuaObjectBox>.fromOpaque(pointer)
                call.state.release(box.takeUnretainedValue().bytes)
                box.release()
            }
            return 0
        }
        setFunction("__gc", release)
        setFunction("__close", release)
        push(type.luaName)
        lua_setfield(L, -2, "__name")
        // Scripts must not reach the metatable: changing it would let them into the host.
        push("locked")
        lua_setfield(L, -2, "__metatable")
        CLua_pop(L, 1)
    }

    /// Sets `__index` of the metatable on top of the stack: methods from `__methods`, then fields.
    private func installIndex<T: AnyObject>(_ type: LuaObjectType<T>, fields: [String: (T) -> LuaValue]) {
        setFunction("__index") { call in
            let object = try call.object(1, type)
            let key = try call.string(2)
            lua_getfield(call.L, CLua_registryindex(), type.name)
            lua_getfield(call.L, -1, "__methods")
            call.state.push(key, on: call.L)
            lua_rawget(call.L, -2)
            if lua_type(call.L, -1) != LUA_TNIL { return 1 }
            lua_settop(call.L, 2)
            guard let field = fields[key] else { return call.results(.nil) }
            return call.results(field(object))
        }
    }

    /// Pushes a new userdata holding `object`, with its type's metatable, charging its `bytes`
    /// against the memory limit until it is collected or closed.
    func pushObject(_ object: AnyObject, typeName: String, bytes: Int, on L: OpaquePointer) throws {
        try charge(bytes, for: "a \(typeName.split(separator: ".").last ?? "")")
        let raw = lua_newuserdatauv(L, MemoryLayout<UnsafeRawPointer?>.size, 0)!
        raw.storeBytes(of: UnsafeRawPointer(Unmanaged.passRetained(LuaObjectBox(object, bytes: bytes)).toOpaque()), as: UnsafeRawPointer?.self)
        luaL_setmetatable(L, typeName)
    }
}
