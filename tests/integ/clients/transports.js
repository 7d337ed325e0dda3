'use strict';
// transports.js - engine.io-client's own Node transports with two optional
// delays, to pin the phases of a polling -> websocket upgrade on loopback,
// where the probe is otherwise so fast that the order of events is a race:
//   probeDelayMs  the websocket probe connection opens this long after the
//                 polling handshake;
//   pollDelayMs   long-poll GET number pollDelayFrom and later (counted per
//                 transport: 1 = the handshake GET) are sent this long after
//                 the client decided to send them. The client counts a
//                 delayed GET as in flight, so an upgrade that starts
//                 meanwhile waits for the server to answer it.

const { NodeXHR, NodeWebSocket } = require('engine.io-client');

function customTransports({ probeDelayMs = 0, pollDelayMs = 0, pollDelayFrom = 1 } = {}) {
  class DelayedPollXHR extends NodeXHR {
    doPoll() {
      this.gets = (this.gets || 0) + 1;
      if (pollDelayMs > 0 && this.gets >= pollDelayFrom) setTimeout(() => super.doPoll(), pollDelayMs);
      else super.doPoll();
    }
  }
  class DelayedProbeWebSocket extends NodeWebSocket {
    doOpen() {
      if (probeDelayMs > 0) setTimeout(() => super.doOpen(), probeDelayMs);
      else super.doOpen();
    }
  }
  return [DelayedPollXHR, DelayedProbeWebSocket];
}

// From the command-line options --probe-delay-ms, --poll-delay-ms,
// --poll-delay-from: the transports for "polling,websocket", or null when no
// delay was asked for (then the stock transports are used by name).
function fromOptions(opt) {
  if (opt.transports !== 'polling,websocket') return null;
  if (!opt['probe-delay-ms'] && !opt['poll-delay-ms']) return null;
  return customTransports({
    probeDelayMs: Number(opt['probe-delay-ms'] || 0),
    pollDelayMs: Number(opt['poll-delay-ms'] || 0),
    pollDelayFrom: Number(opt['poll-delay-from'] || 1),
  });
}

module.exports = { customTransports, fromOptions };
