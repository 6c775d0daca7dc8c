// Preloaded into kinesis-local (node -r): every server it starts listens on 127.0.0.1 only, not on 0.0.0.0.
'use strict';
const net = require('net');
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const host = process.env.STREAMWRECK_BIND_HOST || '127.0.0.1';
  if (typeof args[0] === 'number' || (typeof args[0] === 'string' && /^\d+$/.test(args[0]))) {
    if (typeof args[1] !== 'string') args.splice(1, 0, host);
    else args[1] = host;
  } else if (args[0] && typeof args[0] === 'object' && !args[0].path) {
    args[0] = Object.assign({}, args[0], { host });
  }
  return listen.apply(this, args);
};
