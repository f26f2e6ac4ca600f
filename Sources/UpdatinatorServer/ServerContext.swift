import Hummingbird
import Logging
import Updatinator
import NIOCore

/// A request's context, with the client's IP address (for the inventory and nearest peers).
public struct ServerContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public let clientAddress: String?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        clientAddress = source.channel.remoteAddress?.ipAddress
    }
}

/// Counts every answer by route and status for `/metrics`, and logs what failed without an
/// HTTP answer of its own (a database that went away, say), which is answered 500.
struct CountingMiddleware: RouterMiddleware {
    let metrics: ServerMetrics
    let logger: Logger

    func handle(_ request: Request, context: ServerContext,
                next: (Request, ServerContext) async throws -> Response) async throws -> Response {
        do {
            let response = try await next(request, context)
            metrics.request(route: context.endpointPath ?? "unmatched", status: response.status.code)
            return response
        } catch let error as any HTTPResponseError {
            metrics.request(route: context.endpointPath ?? "unmatched", status: error.status.code)
            throw error
        } catch {
            metrics.request(route: context.endpointPath ?? "unmatched", status: 500)
            logger.error("\(request.method) \(request.uri.path): \(error)")
            throw error
        }
    }
}

extension Router where Context == ServerContext {
    /// GET and HEAD of the files below `pattern`, each parameter one path component.
    func files(_ pattern: RouterPath, _ handler: @escaping @Sendable (Request, ServerContext) async throws -> Response) {
        get(pattern, use: handler)
        head(pattern, use: handler)
    }

    /// `GET /metrics`: the counters in Prometheus's text format.
    func metrics(_ metrics: ServerMetrics) {
        get("/metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"], body: .init(byteBuffer: ByteBuffer(string: metrics.text())))
        }
    }
}
