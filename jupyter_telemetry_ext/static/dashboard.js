// The telemetry dashboard: each view of the JSON API as a Vega-Lite chart, a table and a CSV
// download. The API counts whole UTC days: a period (and the dates chosen) is a UTC date, the
// same for every viewer; other times (health's) are shown in the viewer's time zone.
(function () {
  'use strict';

  const TITLES = {
    'active-users': 'Active users',
    events: 'Events per kind and action',
    'lab-activity': 'JupyterLab activity',
    'active-time': 'Active time per notebook session',
    kernels: 'Kernels used',
    servers: 'Server starts and stops (the hub)',
    outcomes: 'What became of the events (since the process started)',
    health: 'Pipeline health'
  };

  // What an empty view means where "nothing recorded" would mislead.
  const EMPTY = {
    'active-users': 'No event with a recorded user in the range chosen. Users are counted only ' +
      'where they are recorded: record_user set, and the category user-identifier allowed for ' +
      'the schema in c.EventLog.allowed_schemas.'
  };

  // JupyterHub accepts a cookie on a script's request only with the XSRF token of its
  // `_xsrf` cookie (jupyter_server reads the same header).
  function headers() {
    const found = document.cookie.match('\\b_xsrf=([^;]*)\\b');
    return found ? { 'X-XSRFToken': decodeURIComponent(found[1]) } : {};
  }

  // Characters that reorder the text around them or are not seen (bidirectional controls,
  // zero-width and other format characters, tags, control characters such as a tab, line and
  // paragraph separators): a kernel name a user posted could pass for another. Shown as
  // escapes, as the command line shows control characters.
  const UNSEEN = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu;
  const escaped = c => {
    const code = c.codePointAt(0);
    return code > 0xffff ? '\\u{' + code.toString(16) + '}' : '\\u' + code.toString(16).padStart(4, '0');
  };
  function visible(value) {
    return typeof value === 'string' ? value.replace(UNSEEN, escaped) : value;
  }

  function visibleRows(rows) {
    return rows.map(row => Object.fromEntries(Object.entries(row).map(([k, v]) => [k, visible(v)])));
  }

  // A reply's JSON, or a model whose message says what came instead (a login page after the
  // session ended, a proxy's error page): the page never waits on an answer it cannot read.
  async function answerOf(response) {
    try {
      const model = await response.json();
      if (model && typeof model === 'object') return { ok: response.ok, model };
    } catch (e) {
      // not JSON: said below
    }
    const what = 'HTTP ' + response.status + (response.redirected ? ' (redirected to ' + response.url + ')' : '');
    return { ok: false, model: { message: 'the dashboard API did not answer in JSON (' + what + '): reload the page, or sign in again' } };
  }

  function spec(view, rows, bucket) {
    // One bar per period (an ordinal axis), labelled by its UTC date: a period starts at a UTC
    // midnight, which the viewer's time zone would put on the day before west of Greenwich.
    const time = { field: 'period', type: 'ordinal', title: bucket + ' (UTC)', timeUnit: bucket === 'month' ? 'utcyearmonth' : 'utcyearmonthdate' };
    const WHOLE = { tickMinStep: 1, format: 'd' }; // counts: no 0.5 user
    const base = { $schema: 'https://vega.github.io/schema/vega-lite/v6.json', width: 'container', height: 200, data: { values: rows } };
    switch (view) {
      case 'active-users':
        return { ...base, mark: { type: 'bar' }, encoding: { x: time, y: { field: 'users', type: 'quantitative', axis: WHOLE, title: 'users' } } };
      case 'events':
        // A colour per schema and action, as the title says (the action alone says little).
        return { ...base, transform: [{ calculate: "datum.schema + (datum.action ? ' · ' + datum.action : '')", as: 'kind' }], mark: 'bar', encoding: { x: time, y: { aggregate: 'sum', field: 'events', type: 'quantitative', axis: WHOLE }, color: { field: 'kind', type: 'nominal', title: 'schema · action', legend: { orient: 'bottom', columns: 1, labelLimit: 600 } } } };
      case 'lab-activity':
        // Bars side by side: equal counts on lines or points would hide one another.
        return { ...base, transform: [{ fold: ['cell_runs', 'cell_errors', 'notebooks_opened'], as: ['measure', 'count'] }], mark: 'bar', encoding: { x: time, xOffset: { field: 'measure', type: 'nominal' }, y: { field: 'count', type: 'quantitative', axis: WHOLE }, color: { field: 'measure', type: 'nominal' } } };
      case 'active-time':
        return { ...base, mark: 'bar', encoding: { x: { field: 'minutes', type: 'ordinal', title: 'active minutes (5-minute bins)' }, y: { field: 'sessions', type: 'quantitative', axis: WHOLE } } };
      case 'kernels':
        return { ...base, mark: 'bar', encoding: { y: { field: 'kernel', type: 'nominal', sort: '-x' }, x: { field: 'events', type: 'quantitative', axis: WHOLE } } };
      case 'servers':
        return { ...base, mark: 'bar', encoding: { x: time, y: { field: 'events', type: 'quantitative', axis: WHOLE }, color: { field: 'action', type: 'nominal' } } };
      case 'outcomes':
        return { ...base, mark: 'bar', encoding: { y: { field: 'outcome', type: 'nominal' }, x: { aggregate: 'sum', field: 'events', type: 'quantitative', axis: WHOLE } } };
      default: {
        const counts = rows.filter(r => typeof r.value === 'number' && typeof r.value !== 'boolean');
        return { ...base, data: { values: counts }, mark: 'bar', encoding: { y: { field: 'measure', type: 'nominal' }, x: { field: 'value', type: 'quantitative', axis: WHOLE }, color: { field: 'part', type: 'nominal' } } };
      }
    }
  }

  function shown(column, value) {
    if (column === 'period' && typeof value === 'string') {
      return value.slice(0, 10); // a UTC day (a week's Monday, a month's first day)
    }
    if (typeof value === 'string' && /^\d{4}-\d\d-\d\dT.*Z$/.test(value)) {
      return new Date(value).toLocaleString();
    }
    return value === null || value === undefined ? '' : String(visible(value));
  }

  function table(columns, rows) {
    const element = document.createElement('table');
    const head = element.createTHead().insertRow();
    for (const column of columns) {
      const th = document.createElement('th');
      th.scope = 'col';
      th.textContent = column;
      head.appendChild(th);
    }
    const body = element.createTBody();
    for (const row of rows) {
      const tr = body.insertRow();
      for (const column of columns) {
        tr.insertCell().textContent = shown(column, row[column]);
      }
    }
    return element;
  }

  function csv(columns, rows) {
    // The characters a formula starts with: the page has them from core/spreadsheet.py, the
    // rule research datasets in CSV follow too.
    const starts = JSON.parse(document.body.dataset.formulaStarts);
    const quote = v => {
      let text = v === null || v === undefined ? '' : String(v);
      // Text users posted (a kernel name) that a spreadsheet would run as a formula: quoted.
      if (typeof v === 'string' && text !== '' && starts.includes(text[0])) text = "'" + text;
      return /[",\r\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
    };
    return [columns.join(','), ...rows.map(r => columns.map(c => quote(r[c])).join(','))].join('\n') + '\n';
  }

  function section(view) {
    const element = document.createElement('section');
    element.className = 'view';
    element.dataset.view = view;
    const title = document.createElement('h2');
    title.textContent = TITLES[view] || view;
    const chart = document.createElement('div');
    chart.className = 'chart';
    element.append(title, chart);
    return element;
  }

  async function draw(element, api, view, params) {
    const chart = element.querySelector('.chart');
    const response = await fetch(api + '/' + view + '?' + params, { credentials: 'same-origin', headers: headers() });
    const { ok, model } = await answerOf(response);
    if (!ok) {
      chart.textContent = model.message;
      chart.className = 'chart error';
      return;
    }
    if (model.rows.length === 0) {
      chart.textContent = EMPTY[view] || 'Nothing recorded for this view in the range chosen.';
      chart.className = 'chart empty';
    } else {
      await window.vegaEmbed(chart, spec(view, visibleRows(model.rows), model.bucket), { actions: false, renderer: 'svg' });
    }
    const details = document.createElement('details');
    const summary = document.createElement('summary');
    summary.textContent = 'Table (' + model.rows.length + (model.rows.length === 1 ? ' row)' : ' rows)');
    details.append(summary, table(model.columns, model.rows));
    const link = document.createElement('a');
    link.className = 'csv';
    link.textContent = 'Download CSV';
    link.download = view + '.csv';
    link.href = URL.createObjectURL(new Blob([csv(model.columns, model.rows)], { type: 'text/csv' }));
    element.append(details, link);
  }

  function parameters(form) {
    const params = new URLSearchParams();
    const since = form.since.value;
    const until = form.until.value;
    // The dates are UTC days, as the views count them: from the first's midnight to the end
    // of the last.
    if (since) params.set('since', since + 'T00:00:00Z');
    if (until) params.set('until', until + 'T23:59:59.999Z');
    params.set('bucket', form.bucket.value);
    if (form.schema.value.trim()) params.set('schema', form.schema.value.trim());
    return params;
  }

  async function load() {
    const api = document.body.dataset.apiUrl;
    const form = document.getElementById('filters');
    const status = document.getElementById('status');
    const views = document.getElementById('views');
    status.textContent = 'Loading…';
    views.textContent = '';
    const { ok, model } = await answerOf(await fetch(api, { credentials: 'same-origin', headers: headers() }));
    if (!ok) {
      status.textContent = model.message;
      return;
    }
    const params = parameters(form);
    const sections = model.views.map(section);
    views.append(...sections);
    await Promise.all(sections.map((s, i) => draw(s, api, model.views[i], params)));
    status.textContent = 'Source: ' + model.source + (model.scope === 'all' ? '' : ' (your groups only)');
    document.body.dataset.drawn = 'true';
  }

  document.addEventListener('DOMContentLoaded', () => {
    document.getElementById('time-zone').textContent = Intl.DateTimeFormat().resolvedOptions().timeZone;
    const form = document.getElementById('filters');
    const today = new Date();
    const start = new Date(today.getTime() - 29 * 86400000);
    const day = d => d.toISOString().slice(0, 10); // the UTC date
    form.since.value = day(start);
    form.until.value = day(today);
    form.addEventListener('submit', event => {
      event.preventDefault();
      load();
    });
    load();
  });
})();
