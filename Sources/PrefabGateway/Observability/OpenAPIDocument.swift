import PrefabKit

/// The gateway's HTTP API as an OpenAPI 3.1 document, built from the loaded functions: one
/// `POST /invoke/<name>` per function with its inputs as a JSON Schema, and every other route with
/// the statuses and bodies its handler really answers. Served at `GET /openapi.json`;
/// `scripts/api-fuzz.sh` tests the gateway against it.
public struct OpenAPIDocument: Sendable {
    public var catalog: PrefabCatalog
    public var configuration: GatewayConfiguration
    /// Requests need `Authorization: Bearer <key>` (all but `/health`), and may answer 401.
    public var requiresAPIKey: Bool

    public init(catalog: PrefabCatalog, configuration: GatewayConfiguration, requiresAPIKey: Bool = false) {
        self.catalog = catalog
        self.configuration = configuration
        self.requiresAPIKey = requiresAPIKey
    }

    public var json: JSONValue {
        var paths: [String: JSONValue] = [
            "/manifest": ["get": manifestOperation],
            "/health": ["get": healthOperation],
            "/openapi.json": ["get": openAPIOperation],
            "/metrics": ["get": metricsOperation],
            "/invocations/{id}": ["get": invocationStatusOperation, "delete": cancelOperation("cancelInvocation")],
            "/invocations/{id}/cancel": ["post": cancelOperation("cancelInvocationByPost")],
            "/invocations/{id}/messages": ["post": messageOperation],
            "/invocations/{id}/events": ["get": eventsOperation],
            "/files/{invocation}/{file}": ["get": fileOperation],
        ]
        // HEAD wherever GET works: the same statuses and headers, no body.
        for (path, item) in paths {
            guard var operations = item.objectValue, let get = operations["get"] else { continue }
            operations["head"] = Self.headOperation(of: get)
            paths[path] = .object(operations)
        }
        for function in catalog.functions.values {
            paths["/invoke/\(function.manifest.name)"] = ["post": invokeOperation(function)]
        }
        paths.merge(chatPaths) { first, _ in first }
        var schemas = Self.schemas.objectValue ?? [:]
        schemas.merge(Self.chatSchemas) { first, _ in first }
        var components: [String: JSONValue] = ["schemas": .object(schemas), "responses": Self.errorResponses]
        var document: [String: JSONValue] = [
            "openapi": "3.1.0",
            "info": [
                "title": "Prefab Gateway",
                "version": "1.0.0",
                "description": .string(
                    "Functions of the loaded prefabs, served over HTTP: streaming ones as Server-Sent Events, the others as one JSON answer. Every error is {\"error\": {\"code\", \"message\", \"details\"}} with a stable code."
                ),
            ],
            "paths": .object(paths),
        ]
        if let publicBaseURL = configuration.publicBaseURL {
            document["servers"] = [["url": .string(publicBaseURL)]]
        }
        if requiresAPIKey {
            components["securitySchemes"] = [
                "apiKey": [
                    "type": "http", "scheme": "bearer",
                    "description": "An API key of the gateway, sent as Authorization: Bearer <key>.",
                ]
            ]
            document["security"] = [["apiKey": []]]
        }
        document["components"] = .object(components)
        return .object(document)
    }

    // MARK: Invoking functions

    private func invokeOperation(_ function: LoadedFunction) -> JSONValue {
        let manifest = function.manifest
        let inputs = Self.inputsSchema(manifest)
        let needsInputs = !(inputs["required"]?.arrayValue ?? []).isEmpty
        var body: [String: JSONValue] = [
            "type": "object",
            "properties": ["inputs": inputs],
            "additionalProperties": false,
        ]
        if needsInputs { body["required"] = ["inputs"] }
        var responses: [String: JSONValue]
        if manifest.streaming {
            responses = [
                "200": [
                    "description": .string(
                        "The events as Server-Sent Events; with Accept: application/json (and not text/event-stream), all of them collected into one JSON document once the function has ended; with Accept: application/x-ndjson, one event JSON per line as they come."
                    ),
                    "headers": Self.invocationIdHeader,
                    "links": Self.invocationLinks,
                    "content": [
                        "text/event-stream": Self.eventStreamContent,
                        "application/json": ["schema": Self.reference("CollectedEvents")],
                        "application/x-ndjson": Self.ndjsonContent,
                    ],
                ],
                "422": Self.errorResponse("UnprocessableContent"),
            ]
        } else {
            responses = [
                "200": [
                    "description":
                        "The function's result; with Accept: application/x-ndjson, its events (the result in done) one JSON per line.",
                    "headers": Self.invocationIdHeader,
                    "links": Self.invocationLinks,
                    "content": [
                        "application/json": ["schema": Self.reference("Result")],
                        "application/x-ndjson": Self.ndjsonContent,
                    ],
                ],
                "422": [
                    "description": .string(
                        "INVALID_INPUTS: inputs that fail the manifest (details lists every problem as {\"parameter\", \"reason\"}), or the function refused them itself."
                    ),
                    "content": [
                        "application/json": [
                            "schema": ["anyOf": [Self.reference("Error"), Self.reference("ResultFailure")]]
                        ]
                    ],
                ],
                "500": [
                    "description": "The function threw: its error code and message.",
                    "headers": Self.invocationIdHeader,
                    "links": Self.invocationLinks,
                    "content": ["application/json": ["schema": Self.reference("ResultFailure")]],
                ],
            ]
        }
        responses["400"] = Self.errorResponse("BadRequest")
        responses["404"] = Self.errorResponse("NotFound")
        responses["413"] = Self.errorResponse("ContentTooLarge")
        responses["429"] = Self.errorResponse("Overloaded")
        var description = manifest.description ?? ""
        if let returns = manifest.returns?["description"]?.stringValue {
            description += description.isEmpty ? "Returns: \(returns)" : "\n\nReturns: \(returns)"
        }
        var operation: [String: JSONValue] = [
            "operationId": .string("invoke_\(manifest.name)"),
            "summary": .string("Invoke \(manifest.name) (\(manifest.streaming ? "streaming" : "one JSON result"))"),
            "tags": ["functions"],
            "requestBody": [
                "required": .bool(needsInputs),
                "description": "The inputs; an empty body means no inputs.",
                "content": ["application/json": ["schema": .object(body)]],
            ],
            "responses": common(responses),
        ]
        if !description.isEmpty { operation["description"] = .string(description) }
        return .object(operation)
    }

    /// The inputs object as the gateway validates it: the parameters' types and enums, the
    /// required ones without a default, nothing else (unknown inputs are refused), and `null`
    /// wherever it counts as absent.
    static func inputsSchema(_ manifest: FunctionManifest) -> JSONValue {
        var properties: [String: JSONValue] = [:]
        var required: [JSONValue] = []
        for parameter in manifest.parameters {
            let mustBeGiven = parameter.required && parameter.defaultValue == nil
            if mustBeGiven { required.append(.string(parameter.name)) }
            let type = JSONValue.string(parameter.type.rawValue)
            var property: [String: JSONValue] = ["type": mustBeGiven ? type : [type, "null"]]
            if let description = parameter.description { property["description"] = .string(description) }
            if let defaultValue = parameter.defaultValue { property["default"] = defaultValue }
            if let allowed = parameter.allowedValues {
                property["enum"] = .array(mustBeGiven ? allowed : allowed + [.null])
            }
            properties[parameter.name] = .object(property)
        }
        var schema: [String: JSONValue] = [
            "type": ["object", "null"],
            "properties": .object(properties),
            "additionalProperties": false,
        ]
        if !required.isEmpty {
            schema["type"] = "object"
            schema["required"] = .array(required)
        }
        return .object(schema)
    }

    // MARK: Other routes

    private var manifestOperation: JSONValue {
        let entityTag: JSONValue = [
            "ETag": [
                "description": "A tag of the document's bytes: send it back as If-None-Match.",
                "schema": ["type": "string"],
            ]
        ]
        let ifNoneMatch: JSONValue = [
            "name": "If-None-Match", "in": "header", "required": false,
            "description": "ETags (or *): when one is the document's, the answer is 304 with no body.",
            "schema": ["type": "string"],
        ]
        return [
            "operationId": "getManifest",
            "summary": "Every loaded function's manifest entry, with its prefab, runtime and streaming flag",
            "tags": ["gateway"],
            "parameters": [ifNoneMatch],
            "responses": common([
                "200": [
                    "description": "The functions, by name.",
                    "headers": entityTag,
                    "content": ["application/json": ["schema": Self.reference("Manifest")]],
                ],
                "304": ["description": "Not modified: If-None-Match names the current ETag.", "headers": entityTag],
            ]),
        ]
    }

    /// Health checks need no key: no security requirement, and never 401.
    private var healthOperation: JSONValue {
        var operation: [String: JSONValue] = [
            "operationId": "getHealth",
            "summary": "Liveness, and what failed to load",
            "tags": ["gateway"],
            "responses": common(
                ["200": Self.jsonResponse("The gateway is serving.", Self.reference("Health"))], needsKey: false),
        ]
        if requiresAPIKey { operation["security"] = [] }
        return .object(operation)
    }

    private var openAPIOperation: JSONValue {
        [
            "operationId": "getOpenAPI",
            "summary": "This document",
            "tags": ["gateway"],
            "responses": common([
                "200": Self.jsonResponse("The OpenAPI 3.1 document of the loaded functions.", ["type": "object"])
            ]),
        ]
    }

    private var metricsOperation: JSONValue {
        [
            "operationId": "getMetrics",
            "summary": "Calls, durations, events, spawn times, running and queued calls, open streams",
            "tags": ["gateway"],
            "responses": common([
                "200": [
                    "description": "Prometheus text format.",
                    "content": ["text/plain; version=0.0.4; charset=utf-8": ["schema": ["type": "string"]]],
                ]
            ]),
        ]
    }

    private var invocationStatusOperation: JSONValue {
        [
            "operationId": "getInvocation",
            "summary": "An invocation's state, function, timing and event count",
            "tags": ["invocations"],
            "parameters": [Self.invocationIdParameter],
            "responses": common([
                "200": Self.jsonResponse("The invocation.", Self.reference("InvocationStatus")),
                "404": Self.errorResponse("NotFound"),
            ]),
        ]
    }

    private func cancelOperation(_ operationId: String) -> JSONValue {
        [
            "operationId": .string(operationId),
            "summary": "Cancel a running invocation: it ends with an error event CANCELLED",
            "tags": ["invocations"],
            "parameters": [Self.invocationIdParameter],
            "responses": common([
                "202": Self.jsonResponse(
                    "The cancel is under way.",
                    Self.object(["id": ["type": "string"], "state": ["const": "cancelling"]])
                ),
                "404": Self.errorResponse("NotFound"),
                "409": Self.errorResponse("Conflict"),
            ]),
        ]
    }

    private var messageOperation: JSONValue {
        [
            "operationId": "postInvocationMessage",
            "summary": "Deliver one event object (an answer, or anything the function reads) to a running invocation",
            "tags": ["invocations"],
            "parameters": [Self.invocationIdParameter],
            "requestBody": [
                "required": true,
                "content": ["application/json": ["schema": Self.reference("Event")]],
            ],
            "responses": common([
                "202": Self.jsonResponse(
                    "Delivered.", Self.object(["id": ["type": "string"], "delivered": ["const": true]])),
                "400": Self.errorResponse("BadRequest"),
                "404": Self.errorResponse("NotFound"),
                "409": Self.errorResponse("Conflict"),
                "413": Self.errorResponse("ContentTooLarge"),
                "422": Self.errorResponse("UnprocessableContent"),
                "429": Self.errorResponse("TooManyRequests"),
            ]),
        ]
    }

    private var eventsOperation: JSONValue {
        let after: JSONValue = [
            "name": "after", "in": "query", "required": false,
            "description": "Resume after this event number (Last-Event-ID wins when both are given).",
            "schema": ["type": "integer", "minimum": 0],
        ]
        let lastEventId: JSONValue = [
            "name": "Last-Event-ID", "in": "header", "required": false,
            "description": "The id of the last event received, as a browser's EventSource sends it.",
            "schema": ["type": "string", "pattern": "^ *[0-9]+ *$"],
        ]
        return [
            "operationId": "getInvocationEvents",
            "summary": "The invocation's events after Last-Event-ID (or ?after=), then the live ones to the end",
            "tags": ["invocations"],
            "parameters": [Self.invocationIdParameter, after, lastEventId],
            "responses": common([
                "200": [
                    "description": "The events as Server-Sent Events.",
                    "headers": Self.invocationIdHeader,
                    "content": ["text/event-stream": Self.eventStreamContent],
                ],
                "204": [
                    "description": "Nothing more to come: the invocation has ended and every event was sent.",
                    "headers": Self.invocationIdHeader,
                ],
                "400": Self.errorResponse("BadRequest"),
                "404": Self.errorResponse("NotFound"),
            ]),
        ]
    }

    private var fileOperation: JSONValue {
        let invocation: JSONValue = [
            "name": "invocation", "in": "path", "required": true, "schema": ["type": "string"],
        ]
        let file: JSONValue = [
            "name": "file", "in": "path", "required": true, "schema": ["type": "string"],
            "description": "The file's name inside the invocation's output directory.",
        ]
        return [
            "operationId": "getFile",
            "summary": "A file an invocation wrote, with its Content-Type and Content-Length",
            "tags": ["files"],
            "parameters": [invocation, file],
            "responses": common([
                "200": [
                    "description": .string(
                        "The file, as a document that cannot script the gateway's origin (X-Content-Type-Options: nosniff, Content-Security-Policy: sandbox)."
                    ),
                    "headers": [
                        "X-Content-Type-Options": ["schema": ["const": "nosniff"]],
                        "Content-Security-Policy": ["schema": ["const": "sandbox"]],
                    ],
                    "content": ["*/*": ["schema": ["type": "string", "contentMediaType": "application/octet-stream"]]],
                ],
                "404": Self.errorResponse("NotFound"),
            ]),
        ]
    }

    /// `responses` plus what any request can get: a page's origin or a host not allowed, a URL or
    /// headers too large, and 401 without a valid key when keys are required.
    func common(_ responses: [String: JSONValue], needsKey: Bool = true) -> JSONValue {
        var all = responses
        all["403"] = Self.errorResponse("Forbidden")
        all["421"] = Self.errorResponse("MisdirectedRequest")
        all["414"] = Self.errorResponse("URITooLong")
        all["431"] = Self.errorResponse("HeadersTooLarge")
        if requiresAPIKey, needsKey { all["401"] = Self.errorResponse("Unauthorized") }
        return .object(all)
    }

    /// The HEAD twin of a GET: its parameters and statuses, with headers but no content.
    static func headOperation(of get: JSONValue) -> JSONValue {
        var operation = get.objectValue ?? [:]
        if let id = operation["operationId"]?.stringValue { operation["operationId"] = .string(id + "Head") }
        if let summary = operation["summary"]?.stringValue {
            operation["summary"] = .string("Headers only: " + summary.prefix(1).lowercased() + summary.dropFirst())
        }
        var responses: [String: JSONValue] = [:]
        for (status, response) in operation["responses"]?.objectValue ?? [:] {
            var head: [String: JSONValue] = ["description": response["description"] ?? "As for GET, with no body."]
            if let headers = response["headers"] { head["headers"] = headers }
            responses[status] = .object(head)
        }
        operation["responses"] = .object(responses)
        return .object(operation)
    }

    // MARK: Shared pieces

    static func reference(_ schema: String) -> JSONValue {
        ["$ref": .string("#/components/schemas/\(schema)")]
    }

    static func errorResponse(_ name: String) -> JSONValue {
        ["$ref": .string("#/components/responses/\(name)")]
    }

    static func jsonResponse(_ description: String, _ schema: JSONValue) -> JSONValue {
        ["description": .string(description), "content": ["application/json": ["schema": schema]]]
    }

    /// An object whose members are all required; others may be added later.
    static func object(_ properties: [String: JSONValue]) -> JSONValue {
        [
            "type": "object", "required": .array(properties.keys.sorted().map(JSONValue.string)),
            "properties": .object(properties),
        ]
    }

    private static let invocationIdParameter: JSONValue = [
        "name": "id", "in": "path", "required": true, "schema": ["type": "string"],
        "description": "The invocation id: X-Invocation-Id, or invocation_id on the first event.",
    ]

    /// Where an invocation's id leads: its status, events, messages and cancel.
    static let invocationLinks: JSONValue = {
        let id: JSONValue = ["id": "$response.header.X-Invocation-Id"]
        return [
            "status": ["operationId": "getInvocation", "parameters": id],
            "events": ["operationId": "getInvocationEvents", "parameters": id],
            "message": ["operationId": "postInvocationMessage", "parameters": id],
            "cancel": ["operationId": "cancelInvocation", "parameters": id],
            "cancelByPost": ["operationId": "cancelInvocationByPost", "parameters": id],
        ]
    }()

    static let invocationIdHeader: JSONValue = [
        "X-Invocation-Id": [
            "description": "The invocation's id (128 random bits in hex).",
            "schema": ["type": "string", "pattern": "^[0-9a-f]{32}$"],
        ]
    ]

    /// Each SSE message as a client's parser sees it: its `id`, and `data` holding one `Event` as
    /// one-line JSON. `: ping` comment lines keep an idle stream open and are no messages.
    private static let eventStreamContent: JSONValue = [
        "schema": [
            "type": "object",
            "required": ["id", "data"],
            "description": .string(
                "One SSE message per event, numbered from 1. The first event carries invocation_id; the stream ends with exactly one done or error event, after a files event when the function wrote files."
            ),
            "properties": [
                "id": ["type": "string", "pattern": "^[0-9]+$"],
                "event": ["type": "string", "description": "Never sent: EventSource.onmessage sees every event."],
                "data": [
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": ["$ref": "#/components/schemas/Event"],
                ],
            ],
        ]
    ]

    private static let errorResponses: JSONValue = {
        let retryAfter: JSONValue = [
            "Retry-After": ["description": "Seconds to wait before retrying.", "schema": ["type": "integer"]]
        ]
        func response(_ description: String, headers: JSONValue? = nil) -> JSONValue {
            var response: [String: JSONValue] = [
                "description": .string(description),
                "content": ["application/json": ["schema": Self.reference("Error")]],
            ]
            if let headers { response["headers"] = headers }
            return .object(response)
        }
        return [
            "BadRequest": response(
                "INVALID_JSON (the body is not JSON), INVALID_REQUEST (not the shape asked for) or INVALID_MESSAGE."),
            "Unauthorized": response("UNAUTHORIZED: the API key is missing or wrong."),
            "Forbidden": response(
                "ORIGIN_NOT_ALLOWED: a browser page from an origin that is neither the gateway's own, its public URL's, nor on --cors-origin."
            ),
            "MisdirectedRequest": response(
                "HOST_NOT_ALLOWED: a Host that is not an IP address, localhost, the public URL's or an --allowed-host name (DNS rebinding)."
            ),
            "NotFound": response("FUNCTION_NOT_FOUND, INVOCATION_NOT_FOUND, FILE_NOT_FOUND or NOT_FOUND."),
            "Conflict": response("INVOCATION_FINISHED or QUESTION_NOT_PENDING."),
            "ContentTooLarge": response("PAYLOAD_TOO_LARGE: the body is over the gateway's limit."),
            "URITooLong": response("URI_TOO_LONG: the request's URL is too long."),
            "UnprocessableContent": response(
                "INVALID_INPUTS (details lists every problem as {\"parameter\", \"reason\"}) or INVALID_ANSWER."),
            "TooManyRequests": response(
                "TOO_MANY_MESSAGES: messages wait unread by the function.", headers: retryAfter),
            "HeadersTooLarge": response("HEADERS_TOO_LARGE: the request's headers are too large."),
            "Overloaded": response(
                "OVERLOADED: the gateway or the function runs all the calls it may and its queue is full or the wait too long.",
                headers: retryAfter),
        ]
    }()

    private static let schemas: JSONValue = {
        let string: JSONValue = ["type": "string"]
        let integer: JSONValue = ["type": "integer"]
        let errorBody = Self.object(["code": string, "message": string, "details": ["type": "array"]])
        return [
            "Error": ["type": "object", "required": ["error"], "properties": ["error": errorBody]],
            "Event": [
                "type": "object",
                "required": ["type"],
                "description": .string(
                    "An event: start, progress, content, done, error, files (the output files), gap (events no longer kept), or any type a function yields, with all its fields."
                ),
                "properties": [
                    "type": string,
                    "data": ["description": "The event's payload: any JSON value."],
                    "error_code": ["type": "string", "description": "The stable code of an error event."],
                    "invocation_id": ["type": "string", "description": "On the first event of an invocation."],
                ],
            ],
            "File": Self.object([
                "name": string, "url": ["type": "string", "format": "uri"], "size": integer, "content_type": string,
            ]),
            "CollectedEvents": Self.object([
                "events": ["type": "array", "items": Self.reference("Event")],
                "files": ["type": "array", "items": Self.reference("File")],
                "invocation_id": string,
                "success": ["type": "boolean", "description": "Whether the last event is done."],
            ]),
            "Result": Self.object([
                "success": ["const": true],
                "result": ["description": "What the function returned: any JSON value."],
                "files": ["type": "array", "items": Self.reference("File")],
                "invocation_id": string,
            ]),
            "ResultFailure": Self.object([
                "success": ["const": false],
                "error": errorBody,
                "files": ["type": "array", "items": Self.reference("File")],
                "invocation_id": string,
            ]),
            "Manifest": Self.object([
                "functions": [
                    "type": "array",
                    "items": [
                        "type": "object",
                        "required": ["name", "streaming", "prefab", "runtime"],
                        "description": "The function's manifest entry as written, plus prefab, runtime and streaming.",
                        "properties": [
                            "name": string,
                            "description": string,
                            "streaming": ["type": "boolean"],
                            "prefab": string,
                            "runtime": ["type": "string", "enum": ["swift", "python", "process"]],
                            "parameters": ["type": "array", "items": ["type": "object"]],
                        ],
                    ],
                ]
            ]),
            "Health": Self.object([
                "status": ["type": "string", "enum": ["ok", "degraded"]],
                "functions": integer,
                "running": integer,
                "queued": integer,
                "stuck_functions": integer,
                "load_errors": [
                    "type": "array", "items": Self.object(["file": string, "path": string, "reason": string]),
                ],
            ]),
            "InvocationStatus": [
                "type": "object",
                "required": [
                    "id", "function", "state", "started_at", "finished_at", "duration_ms", "events",
                    "oldest_kept_event", "readers",
                ],
                "properties": [
                    "id": string,
                    "function": string,
                    "state": ["type": "string", "enum": ["running", "done", "failed", "cancelled"]],
                    "started_at": ["type": "string", "format": "date-time"],
                    "finished_at": ["type": ["string", "null"], "format": "date-time"],
                    "duration_ms": ["type": "number"],
                    "events": integer,
                    "oldest_kept_event": integer,
                    "readers": integer,
                    "error": Self.object(["code": string, "message": string]),
                ],
            ],
        ]
    }()
}
