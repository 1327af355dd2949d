/** Sluice's public API. */
export { createProxy, type Proxy, type ProxyOptions } from './server/proxy.js'
export { loadConfig, parseConfig, ConfigError, DEFAULT_CONFIG_PATH, type Config } from './config/load.js'
export { createLogger, type LogOptions } from './observability/log.js'
export { ERRORS, ProxyError, type ErrorCode } from './errors.js'
export { parseTarget, type Target } from './connect/target.js'
export { dialRoute, DIRECT, type Route, type Choice, type RouteDialOptions } from './upstream/route.js'
export type { Resolver } from './net/resolver.js'
