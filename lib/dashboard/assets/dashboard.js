// The l4lb dashboard page: listens to /events (Server-Sent Events, one JSON
// snapshot a second: { at, intervalMs, rateWindowMs, stats, rates }, stats
// and rates as lb.stats() and lb.rates() return them) and redraws its
// tables. Every value reaches the DOM as a text node or an attribute value
// (never as HTML), so names and addresses are shown exactly as they are.
'use strict';

(() => {
  const historyLength = 60;
  const history = { pps: [], bps: [], fps: [], dps: [] };
  let lastSnapshotAt = 0;
  let intervalMs = 1000;

  /** An element with attributes and children (strings become text nodes). */
  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes ?? {})) {
      if (value !== undefined && value !== null && value !== false) node.setAttribute(name, String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null) continue;
      node.append(typeof child === 'string' || typeof child === 'number' ? document.createTextNode(String(child)) : child);
    }
    return node;
  }

  const integer = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
  const decimal = new Intl.NumberFormat('en-US', { maximumFractionDigits: 1 });

  /** 1234 -> '1.2 k', 5600000 -> '5.6 M'. */
  function si(value, unit = '') {
    const abs = Math.abs(value);
    const steps = [
      [1e12, 'T'],
      [1e9, 'G'],
      [1e6, 'M'],
      [1e3, 'k'],
    ];
    for (const [size, prefix] of steps) {
      if (abs >= size) return `${decimal.format(value / size)} ${prefix}${unit}`;
    }
    return `${abs > 0 && abs < 10 && !Number.isInteger(value) ? decimal.format(value) : integer.format(value)}${unit ? ` ${unit}` : ''}`;
  }

  const count = (value) => integer.format(value ?? 0);
  const percent = (part, whole) => (whole > 0 ? `${decimal.format((100 * part) / whole)}%` : '–');
  const serviceKey = (s) => `${s.address}:${s.port}/${s.protocol}`;
  const backendKey = (b) => `${b.address}:${b.port}`;

  function setConnection(state, text) {
    const node = document.getElementById('connection');
    node.dataset.state = state;
    node.textContent = text;
  }

  function spark(svg, values) {
    const max = Math.max(1, ...values);
    // The newest value at the right edge; a young history starts part-way in.
    const offset = historyLength - values.length;
    const points = values.map((v, i) => `${(((offset + i) / (historyLength - 1)) * 100).toFixed(1)},${(23 - (v / max) * 22).toFixed(1)}`).join(' ');
    const line = document.createElementNS('http://www.w3.org/2000/svg', 'polyline');
    line.setAttribute('points', points);
    svg.replaceChildren(line);
  }

  function tile(metric, value, detail) {
    const node = document.querySelector(`.tile[data-metric="${metric}"]`);
    node.querySelector('.value').textContent = value;
    if (history[metric]) spark(node.querySelector('.spark'), history[metric]);
    if (detail !== undefined) node.querySelector('.detail').textContent = detail;
    return node;
  }

  function remember(metric, value) {
    const list = history[metric];
    list.push(value);
    while (list.length > historyLength) list.shift();
  }

  function stateBadge(state, extra) {
    return el('span', { class: `badge ${state}`, 'data-field': 'state' }, extra ? `${state} (${extra})` : state);
  }

  function weightText(backend) {
    if (backend.weight === 0) return '0 (draining)';
    if (backend.effectiveWeight !== backend.weight) return `${backend.effectiveWeight} → ${backend.weight} (slow start)`;
    return String(backend.weight);
  }

  function renderService(service, rates) {
    const byBackend = new Map((rates?.backends ?? []).map((b) => [backendKey(b), b]));
    const serviceFlowsPerSec = rates?.flowsPerSec ?? 0;
    const rows = service.backends.map((backend) => {
      const r = byBackend.get(backendKey(backend)) ?? { packetsPerSec: 0, bytesPerSec: 0, flowsPerSec: 0 };
      const share = serviceFlowsPerSec > 0 ? percent(r.flowsPerSec, serviceFlowsPerSec) : percent(backend.totalFlows, service.totalFlows);
      return el(
        'tr',
        { 'data-backend': backendKey(backend), 'data-state': backend.state },
        el('td', { 'data-field': 'address' }, backendKey(backend)),
        el('td', {}, stateBadge(backend.state, backend.nextHopResolved ? undefined : 'next hop unresolved')),
        el('td', { class: 'num', 'data-field': 'weight', 'data-weight': backend.weight }, weightText(backend)),
        el('td', { class: 'num', 'data-field': 'active-flows' }, count(backend.activeFlows)),
        el('td', { class: 'num', 'data-field': 'total-flows' }, count(backend.totalFlows)),
        el('td', { class: 'num', 'data-field': 'pps' }, si(r.packetsPerSec)),
        el('td', { class: 'num', 'data-field': 'bps' }, si(r.bytesPerSec * 8, 'bit/s')),
        el('td', { class: 'num', 'data-field': 'fps' }, si(r.flowsPerSec)),
        el('td', { class: 'num', 'data-field': 'share' }, share),
      );
    });
    if (rows.length === 0) rows.push(el('tr', { class: 'empty' }, el('td', { colspan: 9 }, 'no backends')));
    const up = service.backends.filter((b) => b.state === 'up').length;
    return el(
      'article',
      { class: 'service', 'data-service': serviceKey(service), 'data-state': service.state },
      el(
        'header',
        {},
        el('h3', { 'data-field': 'name' }, serviceKey(service)),
        el('span', { class: 'tag', 'data-field': 'method' }, service.method),
        el('span', { class: 'tag', 'data-field': 'scheduler' }, service.scheduler),
        stateBadge(service.state),
        el(
          'span',
          { class: 'summary' },
          `${up}/${service.backends.length} up · ${count(service.activeFlows)} active flows · ${si(rates?.packetsPerSec ?? 0)} pps · ${si((rates?.bytesPerSec ?? 0) * 8, 'bit/s')} · ${si(serviceFlowsPerSec)} new flows/s`,
        ),
      ),
      el(
        'table',
        { class: 'backends' },
        el(
          'thead',
          {},
          el(
            'tr',
            {},
            ['backend', 'health', 'weight', 'active flows', 'total flows', 'packets/s', 'bits/s', 'new flows/s', 'share'].map((h, i) => el('th', i >= 2 ? { class: 'num' } : {}, h)),
          ),
        ),
        el('tbody', {}, rows),
      ),
    );
  }

  /** Rows of a section's table; cells from index `numericFrom` on are numbers (right-aligned). */
  function rows(section, list, empty, columns, numericFrom = 1) {
    const body = document.querySelector(`#${section} tbody`);
    const built = list.map((row) => el('tr', row.attributes ?? {}, row.cells.map((cell, i) => el('td', i >= numericFrom ? { class: 'num' } : {}, cell))));
    if (built.length === 0) built.push(el('tr', { class: 'empty' }, el('td', { colspan: columns }, empty)));
    body.replaceChildren(...built);
  }

  function render(snapshot) {
    const { stats, rates } = snapshot;
    intervalMs = snapshot.intervalMs;
    lastSnapshotAt = Date.now();
    document.body.dataset.generation = String(stats.generation);
    document.getElementById('meta').textContent =
      `generation ${stats.generation} · ${stats.workers.length} worker${stats.workers.length === 1 ? '' : 's'} · rates over ${snapshot.rateWindowMs / 1000} s · ${new Date(snapshot.at).toLocaleTimeString()}`;

    const flowsPerSec = rates.services.reduce((n, s) => n + s.flowsPerSec, 0);
    const dropsPerSec = Object.values(rates.dropsPerSec).reduce((n, v) => n + v, 0);
    remember('pps', rates.packetsPerSec);
    remember('bps', rates.bytesPerSec * 8);
    remember('fps', flowsPerSec);
    remember('dps', dropsPerSec);
    tile('pps', si(rates.packetsPerSec));
    tile('bps', si(rates.bytesPerSec * 8, 'bit/s'));
    tile('fps', si(flowsPerSec));
    tile('dps', si(dropsPerSec));
    const { active, capacity } = stats.flows;
    const flowTile = tile('flows', percent(active, capacity), `${count(active)} of ${count(capacity)} flows`);
    flowTile.querySelector('.fill').style.width = `${Math.min(100, capacity > 0 ? (100 * active) / capacity : 0)}%`;
    flowTile.dataset.level = capacity > 0 && active / capacity > 0.9 ? 'high' : capacity > 0 && active / capacity > 0.7 ? 'warn' : 'ok';

    const ratesByService = new Map(rates.services.map((s) => [serviceKey(s), s]));
    const list = document.getElementById('service-list');
    const services = stats.services.map((s) => renderService(s, ratesByService.get(serviceKey(s))));
    list.replaceChildren(...(services.length ? services : [el('p', { class: 'empty' }, 'no services')]));

    const drops = Object.entries(stats.drops)
      .filter(([, n]) => n > 0)
      .sort((a, b) => b[1] - a[1]);
    rows(
      'drops',
      drops.map(([reason, n]) => ({ attributes: { 'data-reason': reason }, cells: [reason, count(n), si(rates.dropsPerSec[reason] ?? 0)] })),
      'none',
      3,
    );

    const c = stats.counters;
    const replies = c.replies ?? 0;
    rows(
      'symmetry',
      [
        { attributes: { 'data-counter': 'replies' }, cells: ['nat/fullnat replies', count(replies), ''] },
        { attributes: { 'data-counter': 'repliesIngressPath' }, cells: ['on the ingress path', count(stats.repliesIngressPath), percent(stats.repliesIngressPath, replies)] },
        { attributes: { 'data-counter': 'repliesRouteDiffers' }, cells: ['… where routing would differ', count(stats.repliesRouteDiffers), percent(stats.repliesRouteDiffers, replies)] },
        { attributes: { 'data-counter': 'repliesRouted' }, cells: ['routed (no ingress path known)', count(c.repliesRouted), percent(c.repliesRouted ?? 0, replies)] },
        { attributes: { 'data-counter': 'repliesViaTunnel' }, cells: ['tunnel replies returned inside the tunnel', count(c.repliesViaTunnel), ''] },
        { attributes: { 'data-counter': 'repliesDirect' }, cells: ['tunnel replies routed through the balancer', count(c.repliesDirect), ''] },
      ],
      '',
      3,
    );

    rows(
      'workers',
      stats.workers.map((w, i) => ({ cells: [String(i), count(w.packets), (w.busyNsPerPacket >= 100 ? integer : decimal).format(w.busyNsPerPacket), String(w.configGeneration)] })),
      'no workers',
      4,
    );
    rows(
      'interfaces',
      stats.interfaces.map((i) => ({ attributes: { 'data-interface': i.name }, cells: [i.name, i.mode, count(i.rxPackets), count(i.txPackets), count(i.txDropped), count(i.kernelDrops)] })),
      'no interfaces',
      6,
      2,
    );
  }

  function connect() {
    const events = new EventSource('/events');
    events.addEventListener('open', () => setConnection('live', 'live'));
    events.addEventListener('snapshot', (event) => {
      setConnection('live', 'live');
      render(JSON.parse(event.data));
    });
    events.addEventListener('unavailable', (event) => {
      const { message } = JSON.parse(event.data);
      setConnection('down', `unavailable: ${message}`);
    });
    events.addEventListener('error', () => {
      // EventSource reconnects by itself (the stream's retry: 2 s).
      if (events.readyState !== EventSource.OPEN) setConnection('down', 'disconnected, retrying…');
    });
  }

  // No snapshot for three intervals: say the numbers are old.
  setInterval(() => {
    if (lastSnapshotAt > 0 && Date.now() - lastSnapshotAt > 3 * intervalMs && document.getElementById('connection').dataset.state === 'live') {
      setConnection('stale', `stale: last update ${Math.round((Date.now() - lastSnapshotAt) / 1000)} s ago`);
    }
  }, 1000);

  connect();
})();
