import GatewayCore
import GatewayTLS
import GatewayWire

/// A bounded ring of session and access events for the agent (`sessionEvents` on the
/// control socket). The agent polls with the last sequence it stored; events older than
/// the ring are reported as `missed`, so a slow agent learns it lost some instead of
/// silently skipping them. `bootId` changes with every gateway start, telling the agent
/// that sequences started again from 1.
final class SessionEventLog {
    let capacity: Int
    let bootId: String
    private var ring: [GatewaySessionEvent] = []
    private var head = 0  // index of the oldest event once the ring is full
    private(set) var lastSequence: UInt64 = 0

    init(capacity: Int = 8192) {
        self.capacity = capacity
        bootId = GatewayCrypto.randomBytes(8).map { String(format: "%02x", $0) }.joined()
        ring.reserveCapacity(min(capacity, 1024))
    }

    func record(_ type: GatewaySessionEvent.Kind, time: Int64, _ fill: (inout GatewaySessionEvent) -> Void = { _ in }) {
        lastSequence += 1
        var e = GatewaySessionEvent(sequence: lastSequence, type: type, time: time)
        fill(&e)
        if ring.count < capacity {
            ring.append(e)
        } else {
            ring[head] = e
            head = (head + 1) % capacity
        }
    }

    func after(_ sequence: UInt64, limit: Int) -> SessionEventsResponse {
        guard sequence < lastSequence else { return SessionEventsResponse(events: [], bootId: bootId, missed: 0) }
        let oldest = lastSequence - UInt64(ring.count) + 1  // sequence of ring's oldest (if any)
        let start = max(sequence + 1, oldest)
        let missed = sequence + 1 < oldest && !ring.isEmpty ? oldest - (sequence + 1) : 0
        var out: [GatewaySessionEvent] = []
        let n = max(0, min(limit, 5000))
        if !ring.isEmpty, start <= lastSequence {
            var seq = start
            while seq <= lastSequence, out.count < n {
                let offset = Int(seq - oldest)
                out.append(ring[(head + offset) % ring.count])
                seq += 1
            }
        }
        return SessionEventsResponse(events: out, bootId: bootId, missed: missed)
    }
}
