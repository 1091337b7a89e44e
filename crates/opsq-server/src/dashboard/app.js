// The opsq dashboard: log in, list the account's jobs, read one with its history,
// cancel it. It uses only the public HTTP API, through `api` below; every value from
// the server reaches the page through textContent or a property, never as HTML.
(function () {
  'use strict';

  const SESSION_KEY = 'opsq.dashboard.session';
  const REFRESH_MS = 3000;
  const STATUSES = ['notStarted', 'executing', 'resumed', 'unknown', 'succeeded', 'failed'];
  const TERMINAL = ['succeeded', 'failed'];

  const $ = (id) => document.getElementById(id);
  const enc = encodeURIComponent;

  // The login's answer ({token, alias, user}); sessionStorage only, so it lives as long
  // as this tab and never reaches the URL, another tab or the disk's long-term storage.
  let session = readSession();
  // The list's cursor: `before` of the page shown (null: the newest), the cursors of
  // the newer pages, and the answer's `nextBefore`.
  const page = { before: null, newer: [], next: null };
  // Which job the detail view shows, and a counter that drops stale answers.
  let detailId = null;
  let generation = 0;
  let refreshTimer = null;

  /** An error answer of the API: its HTTP status (0: no answer) and message. */
  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  function readSession() {
    try {
      const stored = JSON.parse(sessionStorage.getItem(SESSION_KEY) || 'null');
      return stored && typeof stored.token === 'string' && typeof stored.alias === 'string' ? stored : null;
    } catch (_) {
      return null;
    }
  }

  /**
   * Calls the API: JSON in, JSON out, the token when logged in. Resolves to
   * {status, data}; rejects with an ApiError carrying the answer's `message`. A 401
   * ends the session and shows the login form with the reason.
   */
  async function api(method, path, body) {
    const headers = { Accept: 'application/json' };
    const init = { method, headers, cache: 'no-store', credentials: 'omit' };
    if (session) headers.Authorization = 'Bearer ' + session.token;
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      throw new ApiError(0, 'The server did not answer (' + err.message + ').');
    }
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (_) {
      data = null;
    }
    if (response.ok) return { status: response.status, data };
    const message = data && typeof data.message === 'string' && data.message
      ? data.message
      : ('HTTP ' + response.status + ' ' + response.statusText).trim();
    if (response.status === 401 && session) {
      endSession('Your session has ended (' + message + '). Please log in again.', true);
    }
    throw new ApiError(response.status, message);
  }

  // ---- small DOM helpers: text only --------------------------------------------

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function show(node, message, isError) {
    node.textContent = message || '';
    node.hidden = !message;
    node.classList.toggle('error', Boolean(isError));
  }

  function formatDate(iso) {
    if (!iso) return '';
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
  }

  function dateCell(iso) {
    const cell = el('td', formatDate(iso), 'date');
    if (iso) cell.title = String(iso);
    return cell;
  }

  function statusBadge(job) {
    const status = String(job.status);
    const badge = el('span', status, 'status');
    if (STATUSES.includes(status)) badge.classList.add('status-' + status);
    const wrap = el('span');
    wrap.append(badge);
    if (job.cancelRequested && !TERMINAL.includes(status)) wrap.append(' ', el('span', 'cancel requested', 'tag'));
    return wrap;
  }

  function progressNode(progress) {
    const wrap = el('span', null, 'progress');
    const percent = progress && Number.isFinite(progress.percent) ? progress.percent : 0;
    const bar = document.createElement('progress');
    bar.max = 100;
    bar.value = percent;
    wrap.append(bar, el('span', percent + '%', 'percent'));
    if (progress && progress.description) {
      const step = progress.stepNumber ? 'step ' + progress.stepNumber + ': ' : '';
      wrap.append(el('span', step + progress.description, 'step'));
    }
    return wrap;
  }

  function asText(value) {
    if (value === null || value === undefined) return '(none)';
    return typeof value === 'string' ? value : JSON.stringify(value, null, 2);
  }

  // ---- views -------------------------------------------------------------------

  function showView(name) {
    for (const view of ['login-view', 'jobs-view', 'detail-view']) $(view).hidden = view !== name;
  }

  function route() {
    if (!session) {
      showLogin();
      return;
    }
    $('logout').hidden = false;
    $('who').textContent = session.user + ' @ ' + session.alias;
    if (!$('filters').elements.account.value) $('filters').elements.account.value = session.alias;
    const match = /^#job\/(.+)$/.exec(location.hash);
    let id = null;
    if (match) {
      try {
        id = decodeURIComponent(match[1]);
      } catch (_) {
        id = null;
      }
    }
    generation += 1;
    if (id) {
      if (id !== detailId) {
        // Another job: nothing of the previous one may stay on screen (or under its
        // cancel button) while this one loads, or if it fails to.
        $('detail-title').textContent = 'Job ' + id;
        $('detail-fields').replaceChildren();
        $('detail-result').textContent = '';
        $('detail-error').textContent = '';
        $('detail-payload').textContent = '';
        $('history-body').replaceChildren();
        $('cancel-form').hidden = true;
        show($('cancel-message'), '');
        $('cancel-form').elements.reason.value = '';
      }
      detailId = id;
      showView('detail-view');
      loadDetail();
    } else {
      detailId = null;
      showView('jobs-view');
      loadJobs();
    }
  }

  function showLogin(message) {
    stopRefresh();
    $('logout').hidden = true;
    $('who').textContent = '';
    showView('login-view');
    if (message !== undefined) show($('login-message'), message.text, message.isError);
    $('login-form').elements.username.focus();
  }

  function endSession(text, isError) {
    session = null;
    sessionStorage.removeItem(SESSION_KEY);
    $('jobs-body').replaceChildren();
    $('detail-fields').replaceChildren();
    $('history-body').replaceChildren();
    $('filters').elements.account.value = '';
    page.before = null;
    page.newer = [];
    showLogin({ text, isError });
  }

  // ---- login -------------------------------------------------------------------

  async function logIn(event) {
    event.preventDefault();
    const form = $('login-form');
    const username = form.elements.username.value.trim();
    const password = form.elements.password.value;
    const button = form.querySelector('button');
    button.disabled = true;
    show($('login-message'), '');
    try {
      const { data } = await api('POST', '/v2/authentication/login', { username, password });
      if (!data || typeof data.bearerToken !== 'string' || typeof data.accountAlias !== 'string') {
        throw new ApiError(200, 'The login answer holds no token.');
      }
      session = { token: data.bearerToken, alias: data.accountAlias, user: data.userName || username };
      sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
      form.elements.password.value = '';
      route();
    } catch (err) {
      show($('login-message'), err.message, true);
    } finally {
      button.disabled = false;
    }
  }

  // ---- the job list --------------------------------------------------------------

  function account() {
    const typed = $('filters').elements.account.value.trim();
    return typed || (session ? session.alias : '');
  }

  function listQuery() {
    const form = $('filters');
    const params = new URLSearchParams();
    const statuses = Array.from(form.querySelectorAll('input[name=status]:checked'), (box) => box.value);
    if (statuses.length) params.set('status', statuses.join(','));
    const kind = form.elements.kind.value.trim();
    if (kind) params.set('kind', kind);
    params.set('limit', form.elements.limit.value);
    if (page.before !== null) params.set('before', String(page.before));
    return params.toString();
  }

  async function loadJobs() {
    const mine = generation;
    const query = listQuery();
    try {
      const { data } = await api('GET', `/v2/operations/${enc(account())}/jobs?${query}`);
      if (mine !== generation) return;
      renderJobs(data);
      show($('jobs-message'), '');
    } catch (err) {
      if (mine !== generation || err.status === 401) return;
      show($('jobs-message'), err.message, true);
    }
    if (mine === generation) scheduleRefresh();
  }

  function renderJobs(data) {
    const items = data && Array.isArray(data.items) ? data.items : [];
    page.next = data && Number.isInteger(data.nextBefore) ? data.nextBefore : null;
    const rows = items.map((job) => {
      const row = document.createElement('tr');
      const link = el('a', job.id);
      link.href = '#job/' + enc(job.id);
      const idCell = el('td', null, 'id');
      idCell.append(link);
      const statusCell = el('td');
      statusCell.append(statusBadge(job));
      const progressCell = el('td');
      progressCell.append(progressNode(job.progress));
      row.append(
        idCell,
        el('td', job.kind, 'kind'),
        el('td', job.title, 'title'),
        statusCell,
        progressCell,
        dateCell(job.createdDate),
        dateCell(job.startedDate),
        dateCell(job.finishedDate),
        el('td', job.attempt + ' / ' + job.maxAttempts, 'number'),
      );
      return row;
    });
    $('jobs-body').replaceChildren(...rows);
    $('jobs-empty').hidden = items.length > 0;

    const counts = new Map();
    for (const job of items) counts.set(job.status, (counts.get(job.status) || 0) + 1);
    const parts = STATUSES.filter((s) => counts.has(s)).map((s) => s + ' ' + counts.get(s));
    for (const [status, count] of counts) if (!STATUSES.includes(status)) parts.push(status + ' ' + count);
    $('counts').textContent = items.length + ' shown' + (parts.length ? ': ' + parts.join(', ') : '');

    $('older').disabled = page.next === null;
    $('newer').disabled = page.newer.length === 0;
    $('newest').disabled = page.before === null;
    $('page-info').textContent = page.before === null ? 'newest jobs' : 'jobs before #' + page.before;
    $('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
  }

  function goTo(before, newer) {
    page.before = before;
    page.newer = newer;
    generation += 1;
    loadJobs();
  }

  // ---- one job -----------------------------------------------------------------

  async function loadDetail() {
    const mine = generation;
    const id = detailId;
    let ended = false;
    try {
      const { data } = await api('GET', `/v2/operations/${enc(account())}/jobs/${enc(id)}`);
      if (mine !== generation) return;
      renderDetail(data);
      show($('detail-message'), '');
      ended = TERMINAL.includes(data.status);
    } catch (err) {
      if (mine !== generation || err.status === 401) return;
      $('detail-title').textContent = 'Job ' + id;
      show($('detail-message'), err.message, true);
    }
    // A job that ended changes no more: no need to poll it.
    if (mine === generation && !ended) scheduleRefresh();
  }

  function renderDetail(job) {
    $('detail-title').textContent = 'Job ' + job.id + ': ' + job.title;
    const progress = job.progress || {};
    const fields = [
      ['Id', job.id],
      ['Number', job.number],
      ['Account', job.accountAlias + ' (' + job.locationAlias + ')'],
      ['Kind', job.kind],
      ['Status', statusBadge(job)],
      ['Progress', progressNode(progress)],
      ['Status date', formatDate(job.statusDate)],
      ['Submitted', formatDate(job.createdDate)],
      ['Started', formatDate(job.startedDate)],
      ['Finished', formatDate(job.finishedDate)],
      ['Runs after', formatDate(job.runAfter)],
      ['Attempts', job.attempt + ' / ' + job.maxAttempts],
      ['Safe to repeat', job.safeToRepeat ? 'yes' : 'no'],
      ['Submitter', job.submitter],
      ['Idempotency key', job.idempotencyKey || ''],
    ];
    const nodes = [];
    for (const [name, value] of fields) {
      const dd = document.createElement('dd');
      if (value instanceof Node) dd.append(value);
      else dd.textContent = value === null || value === undefined ? '' : String(value);
      nodes.push(el('dt', name), dd);
    }
    $('detail-fields').replaceChildren(...nodes);
    $('detail-result').textContent = asText(job.result);
    $('detail-error').textContent = asText(job.error);
    $('detail-payload').textContent = asText(job.payload);

    const history = Array.isArray(job.history) ? job.history : [];
    $('history-body').replaceChildren(...history.map((entry) => {
      const row = document.createElement('tr');
      const statusCell = el('td');
      statusCell.append(statusBadge({ status: entry.status }));
      row.append(dateCell(entry.date), statusCell, el('td', entry.attempt, 'number'), el('td', entry.message));
      return row;
    }));
    $('cancel-form').hidden = TERMINAL.includes(job.status);
  }

  async function cancelJob(event) {
    event.preventDefault();
    const id = detailId;
    const form = $('cancel-form');
    const reason = form.elements.reason.value.trim();
    if (!id || !window.confirm('Cancel job ' + id + '?' + (reason ? '\nReason: ' + reason : ''))) return;
    const button = form.querySelector('button');
    button.disabled = true;
    try {
      const body = reason ? { reason } : {};
      const { status, data } = await api('POST', `/v2/operations/${enc(account())}/jobs/${enc(id)}/cancel`, body);
      const text = status === 202
        ? 'Cancel requested: job ' + data.id + ' is ' + data.status + '; its worker is asked to stop.'
        : 'Cancelled: job ' + data.id + ' is now ' + data.status + '.';
      show($('cancel-message'), text, false);
      form.elements.reason.value = '';
    } catch (err) {
      if (err.status === 401) return;
      show($('cancel-message'), 'Not cancelled: ' + err.message, true);
    } finally {
      button.disabled = false;
    }
    if (id === detailId) {
      generation += 1;
      loadDetail();
    }
  }

  // ---- auto-refresh -------------------------------------------------------------

  function stopRefresh() {
    clearTimeout(refreshTimer);
    refreshTimer = null;
  }

  /** After each load: the next one in a few seconds, unless paused or logged out. */
  function scheduleRefresh() {
    stopRefresh();
    if (!session || !$('auto-refresh').checked) return;
    refreshTimer = setTimeout(() => {
      if (document.hidden) {
        scheduleRefresh();
        return;
      }
      generation += 1;
      if (detailId) loadDetail();
      else loadJobs();
    }, REFRESH_MS);
  }

  // ---- wiring ------------------------------------------------------------------

  function start() {
    $('login-form').addEventListener('submit', logIn);
    $('logout').addEventListener('click', () => endSession('You are logged out.', false));
    $('filters').addEventListener('submit', (event) => {
      event.preventDefault();
      page.before = null;
      page.newer = [];
      if (detailId) location.hash = '';
      else goTo(null, []);
    });
    $('refresh').addEventListener('click', () => {
      generation += 1;
      if (detailId) loadDetail();
      else loadJobs();
    });
    $('auto-refresh').addEventListener('change', () => {
      if ($('auto-refresh').checked) scheduleRefresh();
      else stopRefresh();
    });
    $('newest').addEventListener('click', () => goTo(null, []));
    $('older').addEventListener('click', () => {
      if (page.next !== null) goTo(page.next, page.newer.concat([page.before]));
    });
    $('newer').addEventListener('click', () => {
      if (page.newer.length) goTo(page.newer[page.newer.length - 1], page.newer.slice(0, -1));
    });
    $('cancel-form').addEventListener('submit', cancelJob);
    window.addEventListener('hashchange', route);
    route();
  }

  start();
})();
