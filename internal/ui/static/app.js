// Aura web UI: live updates over Server-Sent Events, and small
// enhancements. Everything from the server is set with textContent, never
// parsed as HTML: inputs, labels, log lines and errors are shown as text.
'use strict';
(function () {
  const page = document.body.dataset.page;
  const liveDot = document.getElementById('live');
  const terminal = new Set(['SUCCEEDED', 'FAILED', 'TIMED_OUT', 'CANCELLED', 'PLANNING_FAILED', 'INTERRUPTED']);

  function setLive(state, title) {
    if (!liveDot) return;
    liveDot.className = 'live ' + state;
    liveDot.title = title;
  }
  function statusName(s) { return String(s || '').replace('TASK_STATUS_', ''); }
  function stepStatusName(s) { return String(s || '').replace('STEP_STATUS_', ''); }
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function setBadge(badge, status) {
    badge.textContent = status;
    badge.className = 'badge s-' + status;
  }
  function when(ts) {
    if (!ts) return '';
    return String(ts).replace('T', ' ').replace(/\.\d+Z$/, 'Z');
  }

  document.querySelectorAll('button[data-copy]').forEach(function (b) {
    b.addEventListener('click', function () {
      const text = document.getElementById(b.dataset.copy).textContent;
      if (navigator.clipboard) {
        navigator.clipboard.writeText(text).then(function () { b.textContent = 'Copied'; }, function () { b.textContent = 'Select and copy'; });
      }
    });
  });

  // live keeps a page up to date: by push over Server-Sent Events, or by
  // polling where the browser has no EventSource or the stream cannot be
  // opened (something between refuses it or never lets it through).
  // EventSource reconnects on its own, sending Last-Event-ID, so nothing is
  // missed. o.stream is the stream's URL and o.on its handlers by event
  // name; o.poll() asks once and resolves to the milliseconds until the
  // next ask, or null to stop. The handle it returns ends either.
  function live(o) {
    const h = { closed: false, polling: false, es: null };
    h.close = function () {
      h.closed = true;
      if (h.es) h.es.close();
    };
    function poll() {
      if (h.closed || h.polling) return;
      h.polling = true;
      setLive('polling', 'live updates: polling (no event stream)');
      (function ask() {
        if (h.closed) return;
        o.poll().then(function (next) {
          if (next !== null && !h.closed) setTimeout(ask, next);
        }, function () {
          setLive('off', 'live updates: the server did not answer; trying again');
          setTimeout(ask, pollEvery);
        });
      })();
    }
    if (!window.EventSource) {
      poll();
      return h;
    }
    const es = new EventSource(o.stream);
    h.es = es;
    let opened = false;
    es.addEventListener('open', function () {
      opened = true;
      setLive('on', 'live updates: connected');
    });
    Object.keys(o.on).forEach(function (name) {
      es.addEventListener(name, function (m) {
        if (!h.closed) o.on[name](m);
      });
    });
    es.addEventListener('error', function () {
      if (h.closed) return;
      if (!opened) {
        // Never connected: the stream is not available here. Poll.
        es.close();
        poll();
        return;
      }
      setLive('off', 'live updates: reconnecting');
      if (es.readyState !== EventSource.CLOSED) return;
      // The server refused the stream. A session that has ended loads the
      // page afresh, which leads to sign-in; otherwise the page polls,
      // which tells a session that may not follow this stream (a token
      // limited to some plans) so.
      fetch('/api/session', { credentials: 'same-origin' }).then(function (r) {
        if (r.status === 401) location.reload(); else poll();
      }, poll);
    });
    return h;
  }
  const pollEvery = 3000;

  // pollAnswer reads a polled answer: 401 (the session ended) loads the
  // page afresh, which leads to sign-in; another refusal stops polling.
  function pollAnswer(r) {
    if (r.status === 401) {
      location.reload();
      return null;
    }
    if (!r.ok) {
      setLive('off', 'live updates are not available to this session: reload to see changes');
      return null;
    }
    setLive('polling', 'live updates: polling (no event stream)');
    return r.json();
  }

  // subscribe follows task events after sequence after: from the stream
  // (URL stream, which carries after itself), or polled from /api/events
  // with the same query. onEvent gets each event and the handle.
  // The handle's finish() ends it once it has every event committed by
  // then: the stream is closed and one last poll brings what it had not yet
  // sent.
  function subscribe(stream, after, onEvent) {
    const query = stream.indexOf('?') < 0 ? '' : stream.slice(stream.indexOf('?') + 1).replace(/(^|&)after=[^&]*/, '');
    let last = after;
    function pollURL() {
      return '/api/events?' + (query ? query.replace(/^&/, '') + '&' : '') + 'after=' + encodeURIComponent(last || '0');
    }
    const h = live({
      stream: stream,
      on: {
        task: function (m) {
          let ev;
          try { ev = JSON.parse(m.data); } catch (e) { return; }
          last = m.lastEventId || last;
          onEvent(ev, h);
        },
        reset: function () { location.reload(); },
      },
      poll: function () {
        return fetch(pollURL(), { credentials: 'same-origin' }).then(pollAnswer).then(function (d) {
          if (!d) return null;
          if (d.reset) {
            location.reload();
            return null;
          }
          d.events.forEach(function (ev) {
            if (!h.closed) onEvent(ev, h);
          });
          last = String(d.last);
          return d.more ? 0 : pollEvery;
        });
      },
    });
    h.finish = function () {
      h.close();
      (function ask() {
        fetch(pollURL(), { credentials: 'same-origin' }).then(function (r) {
          return r.ok ? r.json() : null;
        }).then(function (d) {
          if (!d || d.reset) return;
          d.events.forEach(function (ev) { onEvent(ev, h); });
          last = String(d.last);
          if (d.more) ask();
        }, function () {});
      })();
    };
    return h;
  }

  function taskList() {
    const table = document.getElementById('task-list');
    if (!table) return;
    const body = table.tBodies[0];
    const f = table.dataset;
    subscribe('/events?after=' + encodeURIComponent(f.after || ''), f.after, function (ev) {
      const t = ev.task;
      if (!t) return;
      const status = statusName(t.status);
      const row = body.querySelector('tr[data-id="' + CSS.escape(ev.taskId) + '"]');
      if (row) {
        if (f.status && f.status.toUpperCase() !== status) {
          row.remove();
          return;
        }
        setBadge(row.querySelector('.badge'), status);
        if (t.finishedAt && t.createdAt) {
          row.cells[4].textContent = ((Date.parse(t.finishedAt) - Date.parse(t.createdAt)) / 1000).toFixed(3) + 's';
        }
        return;
      }
      if (f.live !== '1') return;
      if (f.status && f.status.toUpperCase() !== status) return;
      const plan = String(t.task || '').split('/')[0];
      if (f.plan && f.plan !== plan) return;
      if (f.task && f.task !== t.task) return;
      // In a cluster a task's id names its node: "node.local-id".
      if (f.node && String(t.id || '').split('.')[0] !== f.node) return;
      const tr = document.createElement('tr');
      tr.dataset.id = t.id;
      const badge = el('span', '');
      setBadge(badge, status);
      const cells = [badge, el('span', '', t.task)];
      const a = el('a', '', t.id);
      a.href = '/tasks/' + encodeURIComponent(t.id);
      cells.push(a, el('span', '', when(t.createdAt)), el('span', '', ''));
      const tags = el('span', '');
      (t.resourceTags || []).forEach(function (tag) { tags.appendChild(el('span', 'tag', tag)); tags.appendChild(document.createTextNode(' ')); });
      const labels = el('span', '');
      Object.keys(t.labels || {}).sort().forEach(function (k) { labels.appendChild(el('span', 'tag', k + '=' + t.labels[k])); labels.appendChild(document.createTextNode(' ')); });
      cells.push(tags, labels);
      cells.forEach(function (c) { const td = document.createElement('td'); td.appendChild(c); tr.appendChild(td); });
      body.insertBefore(tr, body.firstChild);
      const none = document.getElementById('no-tasks');
      if (none) none.remove();
      while (body.rows.length > 200) body.deleteRow(body.rows.length - 1);
    });
  }

  // childTasks keeps the task page's list of child tasks (its state
  // transitions and interrupt handlers) current: a child created after the
  // page was read gets a row, and each row's badge follows its child's
  // status, from the events of the task's children. It returns the
  // subscription, or null when the task had finished when the page was read.
  function childTasks() {
    const section = document.getElementById('children');
    const table = document.getElementById('children-list');
    if (!section || !table || section.hasAttribute('data-done')) return null;
    const parent = section.dataset.parent;
    const body = table.tBodies[0];
    const after = section.dataset.after || '0';
    return subscribe('/events?parent=' + encodeURIComponent(parent) + '&after=' + encodeURIComponent(after), after, function (ev) {
      const t = ev.task;
      if (!t || t.parentId !== parent) return;
      const id = String(ev.taskId || t.id || '');
      let row = body.querySelector('tr[data-id="' + CSS.escape(id) + '"]');
      if (!row) {
        row = document.createElement('tr');
        row.dataset.id = id;
        const link = el('a', '', id);
        link.setAttribute('href', '/tasks/' + encodeURIComponent(id));
        [el('span', 'badge'), el('span', '', String(t.task || '')), link].forEach(function (c) {
          const td = document.createElement('td');
          td.appendChild(c);
          row.appendChild(td);
        });
        // Newest first, as the server lists them.
        body.insertBefore(row, body.firstChild);
        table.hidden = false;
        const none = document.getElementById('no-children');
        if (none) none.remove();
      }
      setBadge(row.querySelector('.badge'), statusName(t.status));
    });
  }

  function taskPage() {
    const timeline = document.getElementById('timeline');
    if (!timeline) return;
    const id = timeline.dataset.task;
    const logs = document.getElementById('logs');
    const badge = document.getElementById('task-status');
    const cancelForm = document.getElementById('cancel-form');
    const children = childTasks();
    subscribe('/events?task=' + encodeURIComponent(id), '0', function (ev, h) {
      const li = el('li');
      li.appendChild(el('time', '', when(ev.time)));
      li.appendChild(document.createTextNode(' '));
      li.appendChild(el('strong', '', ev.type));
      if (ev.step) li.appendChild(el('span', 'step-name', ' ' + ev.step));
      if (ev.message && ev.type !== 'task.log') li.appendChild(el('span', 'msg', ' ' + ev.message));
      timeline.appendChild(li);
      if (ev.type === 'task.log' && logs) {
        const prefix = (ev.step ? ev.step : '') + (ev.stream ? ' ' + ev.stream : '');
        String(ev.message || '').split('\n').forEach(function (line) {
          const span = el('span', ev.stream === 'stderr' ? 'stderr' : '', (prefix ? '[' + prefix + '] ' : '') + line + '\n');
          logs.appendChild(span);
        });
      }
      if (ev.step) {
        const node = document.querySelector('#steps [data-step="' + CSS.escape(ev.step) + '"]');
        const map = { 'step.started': 'RUNNING', 'step.succeeded': 'SUCCEEDED', 'step.failed': 'FAILED', 'step.skipped': 'SKIPPED', 'step.retrying': 'RUNNING', 'step.cancelled': 'CANCELLED' };
        if (node && map[ev.type]) {
          node.className = 'step st-' + map[ev.type];
          node.querySelector('.step-status').textContent = map[ev.type];
        }
      }
      const t = ev.task;
      if (!t) return;
      const status = statusName(t.status);
      setBadge(badge, status);
      (t.steps || []).forEach(function (s) {
        const node = document.querySelector('#steps [data-step="' + CSS.escape(s.id) + '"]');
        if (!node) return;
        const st = stepStatusName(s.status);
        node.className = 'step st-' + st;
        node.querySelector('.step-status').textContent = st;
      });
      if (terminal.has(status)) {
        if (cancelForm) cancelForm.hidden = true;
        const out = document.getElementById('outcome');
        out.replaceChildren();
        if (t.error) {
          out.appendChild(el('p', 'error', (t.error.kind || 'error') + (t.error.step ? ' in step ' + t.error.step : '') + ':'));
          const pre = el('pre', '', t.error.message || '');
          pre.id = 'task-error';
          out.appendChild(pre);
        }
        if (t.result !== undefined) {
          const pre = el('pre', '', typeof t.result === 'string' ? t.result : JSON.stringify(t.result, null, 2));
          pre.id = 'task-result';
          out.appendChild(pre);
        }
        if (!t.error && t.result === undefined) out.appendChild(el('p', '', 'No result.'));
        if (ev.type === 'task.finished') {
          h.close();
          // Its children ended before it did: what their stream has not
          // yet sent is fetched once, and the list stops following.
          if (children) children.finish();
          setLive('done', 'the task has finished');
        }
      }
    });
  }

  // regionRefresher returns a function that brings the page's
  // [data-refresh] regions up to date, at most once a second: the page is
  // fetched again and each region swapped for its new self. The server's
  // templates escape the fetched page as they did the first, and a parsed
  // document runs no script.
  function regionRefresher() {
    let pending = false;
    return function refresh() {
      if (pending) return;
      pending = true;
      setTimeout(function () {
        fetch(location.pathname + location.search, { credentials: 'same-origin' }).then(function (r) {
          return r.ok ? r.text() : null;
        }).then(function (html) {
          pending = false;
          if (html === null) return;
          const doc = new DOMParser().parseFromString(html, 'text/html');
          document.querySelectorAll('[data-refresh]').forEach(function (old) {
            const fresh = doc.getElementById(old.id);
            if (fresh) old.replaceWith(document.adoptNode(fresh));
          });
        }, function () { pending = false; });
      }, 1000);
    };
  }

  // liveRegions keeps the Overview's and Resources page's regions current:
  // on every task event, and every data-every seconds besides.
  function liveRegions() {
    const first = document.querySelector('[data-refresh]');
    if (!first) return;
    const refresh = regionRefresher();
    const after = first.dataset.after || '';
    subscribe('/events?after=' + encodeURIComponent(after), after, function (ev) {
      if (ev.task) refresh();
    });
    const every = Number(first.dataset.every || 0);
    if (every > 0) setInterval(refresh, every * 1000);
  }

  // The Schedules page: a schedule that fires or skips, or whose last
  // task changes, has its row's last fire, last task and state set again
  // from /api/schedules.
  function schedules() {
    const table = document.getElementById('schedules');
    if (!table) return;
    let pending = false;
    function lastTasks() {
      const ids = new Set();
      table.querySelectorAll('a.last-task').forEach(function (a) { ids.add(a.textContent); });
      return ids;
    }
    function patch(row, s) {
      row.querySelector('.tick').textContent = s.LastTick || '';
      const last = row.querySelector('.last');
      const link = last.querySelector('a.last-task');
      const badge = last.querySelector('.badge');
      if (s.LastTaskID && link && badge) {
        link.textContent = s.LastTaskID;
        link.setAttribute('href', '/tasks/' + encodeURIComponent(s.LastTaskID));
        setBadge(badge, s.LastStatus);
      } else if (s.LastTaskID) {
        last.replaceChildren();
        const a = el('a', 'last-task', s.LastTaskID);
        a.setAttribute('href', '/tasks/' + encodeURIComponent(s.LastTaskID));
        const b = el('span', '', '');
        setBadge(b, s.LastStatus);
        last.append(a, ' ', b);
      }
      const state = row.querySelector('.state .badge');
      if (state) {
        state.textContent = s.Paused ? 'paused' : 'active';
        state.className = 'badge ' + (s.Paused ? 's-CANCELLED' : 's-SUCCEEDED');
      }
    }
    subscribe('/events?after=' + encodeURIComponent(table.dataset.after || ''), table.dataset.after, function (ev) {
      const ours = String(ev.type || '').indexOf('schedule.') === 0 || (ev.taskId && lastTasks().has(ev.taskId));
      if (!ours || pending) return;
      pending = true;
      // At most one refresh every half second, however many events come.
      setTimeout(function () {
        pending = false;
        fetch('/api/schedules', { credentials: 'same-origin' }).then(function (r) { return r.ok ? r.json() : null; }).then(function (d) {
          if (!d) return;
          (d.schedules || []).forEach(function (s) {
            const row = table.querySelector('tr[data-schedule="' + CSS.escape(s.Name) + '"]');
            if (row) patch(row, s);
          });
        });
      }, 500);
    });
  }

  // The Hooks page: its figures and rows, pushed whenever who follows the
  // event log or intercepts, or their lag, changes.
  function hooks() {
    const figures = document.getElementById('hooks');
    if (!figures) return;
    function cell(tr, content, cls) {
      const td = document.createElement('td');
      if (cls) td.className = cls;
      if (typeof content === 'string') td.textContent = content; else if (content) td.appendChild(content);
      tr.appendChild(td);
    }
    function rows(table, list, none, cols, fill) {
      if (!table) return;
      const body = table.tBodies[0];
      body.replaceChildren();
      if (!list.length) {
        const tr = el('tr', 'none');
        const td = el('td', '', none);
        td.colSpan = cols;
        tr.appendChild(td);
        body.appendChild(tr);
      }
      list.forEach(function (x) { body.appendChild(fill(x)); });
    }
    function tags(list) {
      const span = document.createDocumentFragment();
      list.forEach(function (t) { span.append(el('span', 'tag', t), ' '); });
      return span;
    }
    function show(d) {
      figures.querySelectorAll('[data-k]').forEach(function (n) { n.textContent = String(d[n.dataset.k]); });
      rows(document.getElementById('followers'), d.Followers || [], 'Nothing follows the event log.', 8, function (f) {
        const tr = el('tr', 'follower');
        tr.dataset.kind = f.Kind;
        cell(tr, f.Kind);
        cell(tr, f.Name);
        cell(tr, f.Peer);
        cell(tr, (f.Hooks || []).length ? tags(f.Hooks) : (f.Kind === 'subscribe' ? 'all' : ''), 'hook-points');
        cell(tr, f.Plan, 'plan');
        let link = null;
        if (f.TaskID) {
          link = el('a', '', f.TaskID);
          link.href = '/tasks/' + encodeURIComponent(f.TaskID);
        }
        cell(tr, link);
        cell(tr, String(f.Cursor));
        cell(tr, String(f.Lag));
        return tr;
      });
      rows(document.getElementById('interceptors'), d.Intercepting || [], 'No interceptor is registered.', 7, function (i) {
        const tr = el('tr', 'interceptor');
        cell(tr, i.Name);
        cell(tr, el('span', 'tag', 'before_task_run'));
        cell(tr, i.Plan);
        cell(tr, i.Timeout);
        cell(tr, i.FailOpen ? 'the task runs (fail open)' : 'the task is denied (fail closed)');
        cell(tr, String(i.Calls));
        cell(tr, String(i.Denials));
        return tr;
      });
    }
    live({
      stream: '/events/hooks',
      on: {
        hooks: function (m) {
          let d;
          try { d = JSON.parse(m.data); } catch (e) { return; }
          show(d);
        },
      },
      poll: function () {
        return fetch('/api/hooks', { credentials: 'same-origin' }).then(pollAnswer).then(function (d) {
          if (!d) return null;
          show(d);
          return pollEvery;
        });
      },
    });
  }

  // A submit form keeps the button from being pressed twice.
  document.querySelectorAll('form[method="post"]').forEach(function (form) {
    form.addEventListener('submit', function () {
      form.querySelectorAll('button[type="submit"]').forEach(function (b) { b.disabled = true; });
    });
  });

  if (page === 'tasks') taskList();
  if (page === 'task') taskPage();
  if (page === 'overview' || page === 'resources') liveRegions();
  if (page === 'schedules') schedules();
  if (page === 'hooks') hooks();
})();
