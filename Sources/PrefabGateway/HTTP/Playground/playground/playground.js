// The Prefab Gateway playground: lists the functions of /manifest, renders a form per function,
// invokes it with fetch, reads Server-Sent Events incrementally and shows the run as it happens.
// Plain browser JavaScript, no dependencies. Text from the gateway or from a function is only ever
// inserted with textContent / text nodes, never as HTML.
(() => {
  'use strict';

  // ---------------------------------------------------------------- small DOM helpers

  /** Creates an element. `props`: class, text, hidden, on<event> handlers, anything else as an attribute. */
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === 'class') node.className = value;
      else if (key === 'text') node.textContent = String(value);
      else if (key.startsWith('on') && typeof value === 'function') node.addEventListener(key.slice(2), value);
      else if (value === true) node.setAttribute(key, '');
      else node.setAttribute(key, String(value));
    }
    append(node, children);
    return node;
  }

  function append(node, children) {
    for (const child of children.flat(Infinity)) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  }

  function pretty(value) {
    return JSON.stringify(value, null, 2);
  }

  function formatBytes(size) {
    if (typeof size !== 'number') return '';
    if (size < 1024) return `${size} B`;
    if (size < 1024 * 1024) return `${(size / 1024).toFixed(1)} KiB`;
    return `${(size / 1024 / 1024).toFixed(1)} MiB`;
  }

  function formatSeconds(ms) {
    return ms < 10000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 1000)} s`;
  }

  /** Only http(s) URLs become links: a function cannot smuggle in a javascript: URL. */
  function safeUrl(url) {
    try {
      const parsed = new URL(String(url), location.href);
      return parsed.protocol === 'http:' || parsed.protocol === 'https:' ? parsed.href : null;
    } catch (_) {
      return null;
    }
  }

  let uniqueCounter = 0;
  function uniqueId(prefix) {
    uniqueCounter += 1;
    return `${prefix}-${uniqueCounter}`;
  }

  // ---------------------------------------------------------------- Server-Sent Events parser

  /**
   * An incremental SSE parser (the WHATWG event-stream format): feed it text in chunks split
   * anywhere; it calls onMessage({id, event, data}) per complete message and onComment(text) per
   * comment line (the gateway's `: ping`). Lines end with \r\n, \n or \r; several `data:` lines
   * make one message joined with \n.
   */
  class SSEParser {
    constructor(onMessage, onComment) {
      this.onMessage = onMessage;
      this.onComment = onComment || (() => {});
      this.buffer = '';
      this.dataLines = [];
      this.eventType = '';
      this.lastEventId = null;
    }

    feed(text) {
      this.buffer += text;
      const lineEnd = /\r\n|\r|\n/g;
      let start = 0;
      let match;
      while ((match = lineEnd.exec(this.buffer)) !== null) {
        // A \r at the very end may be the first half of a \r\n split across chunks: wait for more.
        if (match[0] === '\r' && match.index === this.buffer.length - 1) break;
        this.line(this.buffer.slice(start, match.index));
        start = match.index + match[0].length;
      }
      this.buffer = this.buffer.slice(start);
    }

    /** The stream ended: a last line without its line end, and a message without its blank line, still count. */
    end() {
      if (this.buffer.length > 0) {
        const rest = this.buffer.endsWith('\r') ? this.buffer.slice(0, -1) : this.buffer;
        this.buffer = '';
        this.line(rest);
      }
      this.dispatch();
    }

    line(line) {
      if (line === '') return this.dispatch();
      if (line.startsWith(':')) return this.onComment(line.slice(1).trim());
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'data') this.dataLines.push(value);
      else if (field === 'event') this.eventType = value;
      else if (field === 'id' && !value.includes('\0')) this.lastEventId = value;
      // `retry` and unknown fields are ignored, as the format says.
      return undefined;
    }

    dispatch() {
      if (this.dataLines.length > 0) {
        const message = { id: this.lastEventId, event: this.eventType || 'message', data: this.dataLines.join('\n') };
        this.dataLines = [];
        this.eventType = '';
        this.onMessage(message);
      }
      this.eventType = '';
    }
  }

  // ---------------------------------------------------------------- the gateway's API

  // A gateway with API keys answers 401: ask for the key once, keep it for this tab, retry.
  const KEY_STORAGE = 'prefab-gateway-api-key';

  /** Whether `url` is on this gateway's own origin: the only place the key may go. */
  function isOwnOrigin(url) {
    try {
      return new URL(url, window.location.href).origin === window.location.origin;
    } catch (error) {
      return false;
    }
  }

  // The key goes to this page's own origin only: a files event could name any URL.
  async function authFetch(url, options = {}) {
    if (!isOwnOrigin(url)) return fetch(url, options);
    const send = () => {
      const key = sessionStorage.getItem(KEY_STORAGE);
      const headers = Object.assign({}, options.headers, key ? { Authorization: `Bearer ${key}` } : {});
      return fetch(url, Object.assign({}, options, { headers }));
    };
    const response = await send();
    if (response.status !== 401) return response;
    const key = window.prompt('This gateway needs an API key:');
    if (!key) return response;
    sessionStorage.setItem(KEY_STORAGE, key.trim());
    return send();
  }

  /** A plain link cannot send the key: with one, fetch the file and save what came back. */
  async function downloadWithKey(event, url, name) {
    if (!sessionStorage.getItem(KEY_STORAGE) || !isOwnOrigin(url)) return;
    event.preventDefault();
    const response = await authFetch(url);
    if (!response.ok) return;
    const link = el('a', { href: URL.createObjectURL(await response.blob()), download: name });
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  }

  const api = {
    manifest: () => getJSON('/manifest'),
    health: () => getJSON('/health'),
    invoke: (name, inputs, signal) =>
      authFetch(`/invoke/${encodeURIComponent(name)}`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ inputs }),
        signal,
      }),
    resume: (id, after, signal) =>
      authFetch(`/invocations/${encodeURIComponent(id)}/events?after=${encodeURIComponent(after || 0)}`, { signal }),
    answer: (id, questionId, answer) =>
      authFetch(`/invocations/${encodeURIComponent(id)}/messages`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ type: 'answer', data: { questionId, answer } }),
      }),
    cancel: (id) => authFetch(`/invocations/${encodeURIComponent(id)}`, { method: 'DELETE' }),
  };

  async function getJSON(url) {
    const response = await authFetch(url, { headers: { Accept: 'application/json' } });
    if (!response.ok) throw new Error(`${url} answered ${response.status}`);
    return response.json();
  }

  /** A refused request's `{"error": {...}}` body as {status, code, message, details}, whatever it holds. */
  async function readError(response) {
    const text = await response.text().catch(() => '');
    let body = null;
    try {
      body = JSON.parse(text);
    } catch (_) {
      /* not JSON: the text itself is the message */
    }
    const error = body && typeof body.error === 'object' && body.error ? body.error : {};
    return {
      status: response.status,
      code: error.code || `HTTP_${response.status}`,
      message: error.message || text || response.statusText || 'the request failed',
      details: Array.isArray(error.details) ? error.details : [],
    };
  }

  function isEventStream(response) {
    return (response.headers.get('Content-Type') || '').toLowerCase().startsWith('text/event-stream');
  }

  // ---------------------------------------------------------------- parameters and their types

  const TYPE_ALIASES = { str: 'string', int: 'integer', float: 'number', bool: 'boolean', list: 'array', dict: 'object' };
  const LONG_TEXT_NAMES = ['text', 'prompt', 'content', 'contents', 'body', 'message', 'code', 'markdown', 'document', 'input'];

  function normaliseType(type) {
    const lower = String(type || '').toLowerCase();
    return TYPE_ALIASES[lower] || lower || 'any';
  }

  function hasDefault(param) {
    return Object.prototype.hasOwnProperty.call(param, 'default') && param.default !== null;
  }

  function describeValue(value) {
    return typeof value === 'string' ? value : JSON.stringify(value);
  }

  /** Quotes a string for a POSIX shell. */
  function shellQuote(text) {
    return `'${String(text).replace(/'/g, "'\\''")}'`;
  }

  // ---------------------------------------------------------------- the form

  /**
   * One form field per parameter. Each field knows how to read its value:
   * {omit: true} (left empty), {value}, or {error: "why the text is not a value"}.
   */
  function createField(param) {
    const type = normaliseType(param.type);
    const id = `param-${param.name}`;
    const hintId = `${id}-hint`;
    const errorId = `${id}-error`;
    const field = { param, type, dirty: false };

    const hasEnum = Array.isArray(param.enum) && param.enum.length > 0;
    if (hasEnum) field.control = enumControl(param, id);
    else if (type === 'boolean') field.control = booleanControl(param, id);
    else if (type === 'integer' || type === 'number') field.control = numberControl(param, id, type);
    else if (type === 'array' || type === 'object' || type === 'any') field.control = jsonControl(param, id, type);
    else field.control = stringControl(param, id);
    field.kind = hasEnum ? 'enum' : type;

    const input = field.control.input;
    input.setAttribute('aria-describedby', `${hintId} ${errorId}`);
    input.setAttribute('data-testid', `param-${param.name}`);
    if (param.required) input.setAttribute('aria-required', 'true');
    input.addEventListener('input', () => {
      field.dirty = true;
      setFieldError(field, '');
    });
    input.addEventListener('change', () => {
      field.dirty = true;
    });

    field.error = el('p', { class: 'field-error', id: errorId, 'data-testid': `param-error-${param.name}`, hidden: true });
    const label = el(
      'label',
      { for: id, class: 'field-label' },
      el('span', { class: 'param-name', text: param.name }),
      param.required ? el('span', { class: 'required', title: 'required', text: 'required' }) : null,
      el('span', { class: 'type-badge', text: hasEnum ? `one of ${param.enum.length}` : type })
    );
    field.node = el(
      'div',
      { class: `field field-${field.kind}`, 'data-param': param.name },
      type === 'boolean' && !hasEnum ? el('div', { class: 'check-row' }, input, label) : [label, input],
      el('p', { class: 'hint', id: hintId }, fieldHint(param, field.kind)),
      field.error
    );
    return field;
  }

  function fieldHint(param, kind) {
    const parts = [];
    if (param.description) parts.push(String(param.description));
    if (kind === 'array') parts.push('A JSON array such as ["a", "b"], or one text item per line.');
    if (kind === 'object') parts.push('A JSON object such as {"key": "value"}.');
    if (kind === 'any') parts.push('Any JSON value; text that is not JSON is sent as a string.');
    if (hasDefault(param)) parts.push(`Default: ${JSON.stringify(param.default)}.`);
    else if (!param.required && kind === 'boolean') parts.push('Optional: sent only once you tick or untick it.');
    else if (!param.required) parts.push('Optional: leave it empty to leave it out.');
    return parts.join(' ');
  }

  function stringControl(param, id) {
    const long = LONG_TEXT_NAMES.includes(String(param.name).toLowerCase());
    const input = long ? el('textarea', { id, name: param.name, rows: 4 }) : el('input', { id, name: param.name, type: 'text' });
    if (hasDefault(param)) input.value = describeValue(param.default);
    return {
      input,
      read: () => (input.value === '' ? { omit: true } : { value: input.value }),
      reset: () => {
        input.value = hasDefault(param) ? describeValue(param.default) : '';
      },
    };
  }

  function numberControl(param, id, type) {
    const input = el('input', { id, name: param.name, type: 'number', step: type === 'integer' ? '1' : 'any', inputmode: type === 'integer' ? 'numeric' : 'decimal' });
    const reset = () => {
      input.value = hasDefault(param) ? String(param.default) : '';
    };
    reset();
    return {
      input,
      reset,
      read: () => {
        if (input.validity && input.validity.badInput) return { error: 'This is not a number.' };
        const text = input.value.trim();
        if (text === '') return { omit: true };
        const number = Number(text);
        if (!Number.isFinite(number)) return { error: 'This is not a number.' };
        if (type === 'integer' && !Number.isInteger(number)) return { error: 'This must be a whole number.' };
        return { value: number };
      },
    };
  }

  function booleanControl(param, id) {
    const input = el('input', { id, name: param.name, type: 'checkbox' });
    const reset = () => {
      input.checked = param.default === true;
    };
    reset();
    return {
      input,
      reset,
      // An optional checkbox without a default is only sent once the user has touched it.
      read: (field) => (param.required || hasDefault(param) || field.dirty ? { value: input.checked } : { omit: true }),
    };
  }

  function enumControl(param, id) {
    const input = el('select', { id, name: param.name });
    if (!param.required || !hasDefault(param)) {
      input.append(el('option', { value: '', text: param.required ? '— choose —' : '— not set —' }));
    }
    for (const option of param.enum) input.append(el('option', { value: JSON.stringify(option), text: describeValue(option) }));
    const reset = () => {
      input.value = hasDefault(param) ? JSON.stringify(param.default) : '';
    };
    reset();
    return {
      input,
      reset,
      read: () => (input.value === '' ? { omit: true } : { value: JSON.parse(input.value) }),
    };
  }

  function jsonControl(param, id, type) {
    const example = type === 'array' ? '["first", "second"]' : type === 'object' ? '{"key": "value"}' : '"text", 42, [1, 2] or {"a": 1}';
    const input = el('textarea', { id, name: param.name, rows: 3, class: 'mono', spellcheck: 'false', placeholder: example });
    const reset = () => {
      input.value = hasDefault(param) ? JSON.stringify(param.default) : '';
    };
    reset();
    return { input, reset, read: () => readJSONText(input.value, type) };
  }

  function readJSONText(text, type) {
    const trimmed = text.trim();
    if (trimmed === '') return { omit: true };
    if (type === 'array' && !trimmed.startsWith('[')) {
      return { value: trimmed.split(/\r\n|\r|\n/).map((line) => line.trim()).filter((line) => line !== '') };
    }
    let value;
    try {
      value = JSON.parse(trimmed);
    } catch (error) {
      if (type === 'any') return { value: text };
      return { error: `This is not valid JSON: ${error.message}` };
    }
    if (type === 'array' && !Array.isArray(value)) return { error: 'This must be a JSON array, like ["a", "b"].' };
    if (type === 'object' && (value === null || typeof value !== 'object' || Array.isArray(value))) {
      return { error: 'This must be a JSON object, like {"key": "value"}.' };
    }
    return { value };
  }

  function setFieldError(field, message) {
    field.error.textContent = message;
    field.error.hidden = !message;
    if (message) field.control.input.setAttribute('aria-invalid', 'true');
    else field.control.input.removeAttribute('aria-invalid');
  }

  /** The inputs to send, or the fields whose text is not a value. Empty fields are left out. */
  function collectInputs(fields) {
    const inputs = {};
    const invalid = [];
    for (const field of fields) {
      const result = field.control.read(field);
      if (result.error) {
        setFieldError(field, result.error);
        invalid.push(field);
      } else {
        setFieldError(field, '');
        if (!result.omit) inputs[field.param.name] = result.value;
      }
    }
    return { inputs, invalid };
  }

  // ---------------------------------------------------------------- a run

  const TERMINAL_STATES = ['done', 'error', 'cancelled'];
  const STATE_LABELS = {
    starting: 'starting',
    running: 'running',
    waiting: 'waiting for your answer',
    cancelling: 'cancelling',
    done: 'done',
    error: 'error',
    cancelled: 'cancelled',
  };

  /** One invocation and its view: status, progress, text, questions, result, files, errors, event log. */
  class Run {
    constructor(fn, inputs, hooks) {
      this.fn = fn;
      this.inputs = inputs;
      this.hooks = hooks;
      this.state = 'starting';
      this.invocationId = null;
      this.lastEventId = null;
      this.eventCount = 0;
      this.startedAt = performance.now();
      this.endedAt = null;
      this.controller = new AbortController();
      this.openQuestions = new Map();
      this.view = this.buildView();
      this.timer = setInterval(() => this.renderStatus(), 200);
      this.renderStatus();
    }

    get finished() {
      return TERMINAL_STATES.includes(this.state);
    }

    // ---- view

    buildView() {
      const v = {};
      v.status = el('span', { class: 'status', 'data-testid': 'run-status', role: 'status', 'aria-live': 'polite' });
      v.invocation = el('a', { class: 'invocation muted', 'data-testid': 'invocation-id', target: '_blank', rel: 'noopener', title: "the invocation's state at the gateway", hidden: true });
      v.cancel = el('button', { type: 'button', class: 'button danger', 'data-testid': 'cancel', text: 'Cancel', onclick: () => this.cancel() });
      v.note = el('p', { class: 'run-note muted', 'data-testid': 'run-note', hidden: true });

      v.progressFill = el('div', { class: 'progress-fill' });
      v.progressBar = el('div', {
        class: 'progress-bar', role: 'progressbar', 'aria-label': 'Progress', 'aria-valuemin': 0, 'aria-valuemax': 100,
        'data-testid': 'progress-bar',
      }, v.progressFill);
      v.progressText = el('p', { class: 'progress-text', 'data-testid': 'progress-text' });
      v.progress = el('div', { class: 'block', hidden: true }, el('h3', { text: 'Progress' }), v.progressBar, v.progressText);

      v.content = el('pre', { class: 'output', 'data-testid': 'content-output', 'aria-live': 'off' });
      v.contentBlock = el('div', { class: 'block', hidden: true }, el('h3', { text: 'Streamed text' }), v.content);

      v.questions = el('div', { class: 'questions', 'data-testid': 'questions' });

      v.error = el('div', { class: 'error-box', 'data-testid': 'error', role: 'alert', hidden: true });

      v.result = el('pre', { class: 'output mono', 'data-testid': 'result' });
      v.resultBlock = el('div', { class: 'block', hidden: true }, el('h3', { text: 'Result' }), v.result);

      v.files = el('ul', { class: 'files', 'data-testid': 'files' });
      v.filesBlock = el('div', { class: 'block', hidden: true }, el('h3', { text: 'Output files' }), v.files);

      v.logCount = el('span', { text: '0' });
      v.log = el('ol', { class: 'event-list mono' });
      v.logBlock = el('details', { class: 'event-log', 'data-testid': 'event-log' },
        el('summary', {}, 'Raw events (', v.logCount, ')'), v.log);

      v.root = el('section', { class: 'card run', 'data-testid': 'run', 'aria-label': `Run of ${this.fn.name}` },
        el('div', { class: 'run-head' },
          el('h2', {}, 'Run of ', el('code', { text: this.fn.name })),
          v.status, el('span', { class: 'spacer' }), v.cancel),
        v.invocation, v.note, v.progress, v.contentBlock, v.questions, v.error, v.resultBlock, v.filesBlock,
        this.requestView(), v.logBlock);
      return v;
    }

    requestView() {
      const body = JSON.stringify({ inputs: this.inputs });
      const url = new URL(`/invoke/${encodeURIComponent(this.fn.name)}`, location.href).href;
      const curl = `curl -N -X POST ${shellQuote(url)} -H 'Content-Type: application/json' -d ${shellQuote(body)}`;
      return el('details', { class: 'request', 'data-testid': 'request' },
        el('summary', { text: 'Request' }),
        el('p', { class: 'muted' }, 'POST ', el('code', { text: `/invoke/${this.fn.name}` }), ' with the body:'),
        el('pre', { class: 'output mono', text: pretty({ inputs: this.inputs }) }),
        el('p', { class: 'muted', text: 'The same call from a terminal:' }),
        el('pre', { class: 'output mono', 'data-testid': 'curl', text: curl }));
    }

    setState(state) {
      if (this.finished) return;
      this.state = state;
      if (this.finished) {
        this.endedAt = performance.now();
        clearInterval(this.timer);
        this.settleProgress();
        this.closeOpenQuestions();
        this.hooks.onFinish(this);
      }
      this.renderStatus();
    }

    renderStatus() {
      const v = this.view;
      const elapsed = (this.endedAt || performance.now()) - this.startedAt;
      const label = STATE_LABELS[this.state] || this.state;
      v.status.textContent = `${label} · ${formatSeconds(elapsed)}`;
      v.status.setAttribute('data-state', this.state);
      v.status.className = `status status-${this.state}`;
      v.cancel.hidden = this.finished;
      v.cancel.disabled = this.state === 'cancelling';
      v.cancel.textContent = this.state === 'cancelling' ? 'Cancelling…' : 'Cancel';
      if (this.invocationId && v.invocation.hidden) {
        v.invocation.textContent = `invocation ${this.invocationId}`;
        v.invocation.href = `/invocations/${encodeURIComponent(this.invocationId)}`;
        v.invocation.hidden = false;
      }
    }

    note(text) {
      this.view.note.textContent = text;
      this.view.note.hidden = !text;
    }

    // ---- starting and reading

    async start() {
      let response;
      try {
        response = await api.invoke(this.fn.name, this.inputs, this.controller.signal);
      } catch (error) {
        if (this.state === 'cancelling') return this.finishCancelledLocally();
        return this.fail('NETWORK_ERROR', `The gateway could not be reached: ${error.message}`);
      }
      this.invocationId = response.headers.get('X-Invocation-Id') || this.invocationId;
      if (this.state === 'cancelling' && this.invocationId) this.sendCancel();
      else if (this.state === 'starting') this.setState('running');

      if (!response.ok && !isEventStream(response)) {
        const text = await response.clone().text().catch(() => '');
        let body = null;
        try {
          body = JSON.parse(text);
        } catch (_) {
          /* handled by readError */
        }
        if (body && body.success === false) return this.showJSONAnswer(body, response.status);
        return this.showRefusal(await readError(response));
      }
      if (isEventStream(response)) return this.readEvents(response);
      let body;
      try {
        body = await response.json();
      } catch (error) {
        return this.fail('BAD_RESPONSE', `The gateway's answer is not JSON: ${error.message}`);
      }
      return this.showJSONAnswer(body, response.status);
    }

    async readEvents(response, attempt = 0) {
      const parser = new SSEParser((message) => this.onMessage(message), () => {});
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          parser.feed(decoder.decode(value, { stream: true }));
        }
        parser.feed(decoder.decode());
        parser.end();
      } catch (error) {
        if (this.controller.signal.aborted) return this.finishCancelledLocally();
        parser.end();
      }
      if (!this.finished) await this.resume(attempt);
    }

    /** The stream ended without done or error: ask the gateway for the rest (GET /invocations/<id>/events). */
    async resume(attempt) {
      if (!this.invocationId || attempt >= 3) {
        return this.fail('CONNECTION_LOST', 'The connection to the gateway ended before the run finished.');
      }
      this.note(`The connection dropped; picking the run up again after event ${this.lastEventId || 0}…`);
      await new Promise((resolve) => setTimeout(resolve, 300 * (attempt + 1)));
      let response;
      try {
        response = await api.resume(this.invocationId, this.lastEventId, this.controller.signal);
      } catch (_) {
        if (this.controller.signal.aborted) return this.finishCancelledLocally();
        return this.resume(attempt + 1);
      }
      if (response.status === 204 || !isEventStream(response)) {
        const refusal = response.status === 204 ? null : await readError(response);
        return this.fail('CONNECTION_LOST', refusal ? `${refusal.code}: ${refusal.message}` : 'The run has no more events, but it never said done.');
      }
      this.note('');
      return this.readEvents(response, attempt + 1);
    }

    onMessage(message) {
      if (message.id !== null) this.lastEventId = message.id;
      let event;
      try {
        event = JSON.parse(message.data);
      } catch (_) {
        this.log({ unparsed: message.data }, message.id, 'not JSON');
        return;
      }
      this.handleEvent(event, message.id);
    }

    handleEvent(event, id) {
      this.log(event, id);
      if (!event || typeof event !== 'object') return;
      if (event.invocation_id && !this.invocationId) {
        this.invocationId = String(event.invocation_id);
        if (this.state === 'cancelling') this.sendCancel();
      }
      if (this.finished) return; // anything after the terminal event is only logged
      const handler = {
        start: () => this.onStart(event),
        progress: () => this.onProgress(event.data || {}),
        content: () => this.onContent(event.data),
        done: () => this.onDone(event),
        error: () => this.onError(event),
        files: () => this.showFiles(event.data),
        question: () => this.showQuestion(event),
        gap: () => this.note(event.data && event.data.message ? `Some events were skipped: ${event.data.message}` : 'Some events were skipped.'),
      }[event.type];
      if (handler) handler();
      this.renderStatus();
    }

    // ---- the event types

    onStart(event) {
      const message = event.data && typeof event.data === 'object' ? event.data.message : null;
      if (typeof message === 'string') this.note(message);
    }

    onProgress(data) {
      const v = this.view;
      v.progress.hidden = false;
      const current = typeof data.current === 'number' ? data.current : null;
      const total = typeof data.total === 'number' ? data.total : null;
      let percentage = typeof data.percentage === 'number' ? data.percentage : null;
      if (percentage === null && current !== null && total) percentage = Math.round((current / total) * 100);
      if (percentage !== null) {
        percentage = Math.max(0, Math.min(100, percentage));
        v.progressFill.style.width = `${percentage}%`;
        v.progressBar.setAttribute('aria-valuenow', String(percentage));
        v.progressBar.classList.remove('indeterminate');
      } else {
        v.progressBar.classList.add('indeterminate');
      }
      const parts = [];
      if (current !== null) parts.push(total !== null ? `${current} / ${total}` : `step ${current}`);
      if (percentage !== null) parts.push(`${percentage}%`);
      let text = parts.join(' · ');
      if (data.message !== undefined && data.message !== null) text += `${text ? ' — ' : ''}${describeValue(data.message)}`;
      v.progressText.textContent = text;
      v.progressBar.setAttribute('aria-valuetext', text);
    }

    /** A bar without percentages stops moving when the run ends: full when done, empty otherwise. */
    settleProgress() {
      const bar = this.view.progressBar;
      if (!bar.classList.contains('indeterminate')) return;
      bar.classList.remove('indeterminate');
      this.view.progressFill.style.width = this.state === 'done' ? '100%' : '0';
    }

    onContent(data) {
      this.view.contentBlock.hidden = false;
      this.view.content.append(document.createTextNode(typeof data === 'string' ? data : JSON.stringify(data)));
    }

    onDone(event) {
      const hasData = Object.prototype.hasOwnProperty.call(event, 'data');
      this.showResult(hasData ? event.data : undefined);
      if (this.state === 'cancelling') this.note('The run finished before the cancel reached it.');
      this.setState('done');
    }

    onError(event) {
      const code = event.error_code || (event.data && event.data.error_code) || 'ERROR';
      const message = typeof event.data === 'string' ? event.data : event.message || (event.data ? JSON.stringify(event.data) : 'the run failed');
      this.showError({ code, message, details: [] });
      this.setState(code === 'CANCELLED' ? 'cancelled' : 'error');
    }

    showResult(value) {
      this.view.resultBlock.hidden = false;
      this.view.result.textContent = value === undefined ? '(the run finished without a result)' : pretty(value);
    }

    showFiles(files) {
      const v = this.view;
      if (!Array.isArray(files)) return;
      v.filesBlock.hidden = false;
      for (const file of files) {
        if (!file || typeof file !== 'object') continue;
        const name = String(file.name || file.url || 'file');
        const url = safeUrl(file.url);
        const meta = [formatBytes(file.size), file.content_type ? String(file.content_type).split(';')[0] : ''].filter(Boolean).join(' · ');
        v.files.append(el('li', {},
          url ? el('a', { href: url, download: name, 'data-testid': 'file-link', text: name, onclick: (event) => downloadWithKey(event, url, name) }) : el('span', { text: name }),
          url ? el('a', { href: url, target: '_blank', rel: 'noopener', class: 'open-link', 'aria-label': `open ${name} in a new tab`, text: 'open' }) : null,
          meta ? el('span', { class: 'muted', text: meta }) : null));
      }
    }

    /** An error in red with its code; for a refused call, each problem with its parameter. */
    showError(error) {
      const v = this.view;
      clear(v.error);
      v.error.hidden = false;
      v.error.classList.toggle('cancelled', error.code === 'CANCELLED');
      append(v.error, [
        el('p', { class: 'error-title' },
          el('span', { class: 'error-code', 'data-testid': 'error-code', text: error.code }),
          el('span', { class: 'error-message', 'data-testid': 'error-message', text: error.message })),
        error.status ? el('p', { class: 'error-status', text: `HTTP ${error.status}` }) : null,
      ]);
      if (error.details && error.details.length > 0) {
        v.error.append(el('ul', { class: 'error-details', 'data-testid': 'error-details' },
          error.details.map((detail) => (detail && typeof detail === 'object' && detail.parameter !== undefined
            ? el('li', {}, el('code', { text: String(detail.parameter) }), ` ${detail.reason || 'is invalid'}`)
            : el('li', { text: describeValue(detail) })))));
      }
    }

    showJSONAnswer(body, status) {
      this.log(body, null, `response ${status}`);
      if (body && body.invocation_id && !this.invocationId) this.invocationId = String(body.invocation_id);
      if (body && Array.isArray(body.files) && body.files.length > 0) this.showFiles(body.files);
      if (body && body.success === true) {
        this.showResult(body.result);
        return this.setState('done');
      }
      if (body && body.success === false) {
        const error = body.error || {};
        this.showError({ code: error.code || 'ERROR', message: error.message || 'the function failed', details: error.details || [], status });
        if (body.error && body.error.code === 'INVALID_INPUTS') this.hooks.onInvalidInputs(error.details || []);
        return this.setState('error');
      }
      if (body && body.error) return this.showRefusal({ status, code: body.error.code, message: body.error.message, details: body.error.details || [] });
      this.showResult(body);
      return this.setState('done');
    }

    showRefusal(error) {
      this.log({ error: { code: error.code, message: error.message, details: error.details } }, null, `response ${error.status}`);
      this.showError(error);
      if (error.code === 'INVALID_INPUTS') this.hooks.onInvalidInputs(error.details);
      this.setState('error');
    }

    fail(code, message) {
      this.showError({ code, message, details: [] });
      this.setState('error');
    }

    // ---- questions

    showQuestion(event) {
      const data = event.data && typeof event.data === 'object' ? event.data : {};
      const questionId = data.questionId !== undefined ? String(data.questionId) : '';
      const text = event.text || data.text || data.question || 'The function asks a question.';
      const options = Array.isArray(data.options) && data.options.length > 0 ? data.options : null;
      const previous = this.openQuestions.get(questionId);
      if (previous) previous.node.remove();

      const q = { questionId, text, options };
      const textId = uniqueId('question-text');
      q.error = el('p', { class: 'field-error', 'data-testid': 'answer-error', role: 'alert', hidden: true });
      if (options) {
        q.controls = options.map((option) => el('button', {
          type: 'button', class: 'button option', 'data-testid': `answer-option-${describeValue(option)}`,
          'data-value': JSON.stringify(option), text: describeValue(option), onclick: () => this.answer(q, option),
        }));
        q.body = el('div', { class: 'options', role: 'group', 'aria-labelledby': textId }, q.controls);
      } else {
        const inputId = uniqueId('answer');
        const input = el('input', { id: inputId, type: 'text', 'data-testid': 'answer-input', autocomplete: 'off', 'aria-describedby': textId });
        const send = el('button', { type: 'submit', class: 'button primary', 'data-testid': 'answer-send', text: 'Send' });
        q.controls = [input, send];
        q.body = el('form', { class: 'answer-form', onsubmit: (e) => { e.preventDefault(); this.answer(q, input.value); } },
          el('label', { for: inputId, class: 'sr-only', text: 'Your answer' }), input, send);
      }
      q.node = el('div', { class: 'question', 'data-testid': 'question', 'data-question-id': questionId },
        el('p', { class: 'question-text', id: textId }, el('span', { class: 'question-mark', 'aria-hidden': 'true', text: '?' }), text),
        q.body, q.error);
      this.openQuestions.set(questionId, q);
      this.view.questions.append(q.node);
      if (this.state === 'running') this.setState('waiting');
      q.controls[0].focus();
    }

    async answer(q, value) {
      if (!this.invocationId) return this.showAnswerError(q, 'The invocation id is not known yet; try again in a moment.');
      q.controls.forEach((control) => { control.disabled = true; });
      let response;
      try {
        response = await api.answer(this.invocationId, q.questionId, value);
      } catch (error) {
        return this.showAnswerError(q, `The answer could not be sent: ${error.message}`);
      }
      if (response.ok) return this.markAnswered(q, value);
      const error = await readError(response);
      const details = error.details.length ? ` (${error.details.map(describeValue).join(', ')})` : '';
      return this.showAnswerError(q, `${error.code}: ${error.message}${details}`);
    }

    showAnswerError(q, message) {
      q.error.textContent = message;
      q.error.hidden = false;
      if (!this.finished) q.controls.forEach((control) => { control.disabled = false; });
      const focusable = q.controls.find((control) => control.tagName === 'INPUT') || q.controls[0];
      if (focusable && !focusable.disabled) focusable.focus();
    }

    markAnswered(q, value) {
      this.openQuestions.delete(q.questionId);
      q.node.className = 'question answered';
      q.node.setAttribute('data-testid', 'question-answered');
      clear(q.node).append(el('p', { class: 'question-text' },
        el('span', { class: 'question-mark', 'aria-hidden': 'true', text: '✓' }), q.text, ' ',
        el('strong', { class: 'answer', text: describeValue(value) })));
      if (this.state === 'waiting' && this.openQuestions.size === 0) this.setState('running');
    }

    closeOpenQuestions() {
      for (const q of this.openQuestions.values()) {
        q.controls.forEach((control) => { control.disabled = true; });
        q.node.classList.add('closed');
        q.node.setAttribute('data-testid', 'question-closed');
      }
      this.openQuestions.clear();
    }

    // ---- cancelling

    cancel() {
      if (this.finished || this.state === 'cancelling') return;
      this.setState('cancelling');
      if (this.invocationId) this.sendCancel();
      else this.controller.abort(); // not started yet: stopping the request is enough
    }

    async sendCancel() {
      let response;
      try {
        response = await api.cancel(this.invocationId);
      } catch (error) {
        this.note(`The cancel could not be sent: ${error.message}`);
        this.controller.abort();
        return;
      }
      if (response.ok) {
        // The stream now ends with error CANCELLED; if it does not within 5 s, stop reading.
        setTimeout(() => {
          if (!this.finished) this.controller.abort();
        }, 5000);
      } else if (!this.finished) {
        const error = await readError(response);
        this.note(`The gateway refused the cancel: ${error.code}: ${error.message}`);
      }
    }

    finishCancelledLocally() {
      if (this.finished) return;
      this.showError({ code: 'CANCELLED', message: 'The run was cancelled before the gateway confirmed it.', details: [] });
      this.setState('cancelled');
    }

    /** Stops this run (a new run of the same function replaces it). */
    stop() {
      if (this.finished) return;
      if (this.invocationId) api.cancel(this.invocationId).catch(() => {});
      this.controller.abort();
      this.finishCancelledLocally();
    }

    // ---- the raw event log

    log(event, id, label) {
      this.eventCount += 1;
      this.view.logCount.textContent = String(this.eventCount);
      const offset = Math.round(performance.now() - this.startedAt);
      const type = event && typeof event === 'object' && typeof event.type === 'string' ? event.type : label || '';
      this.view.log.append(el('li', { class: `event event-${type.replace(/[^a-z_-]/gi, '')}` },
        el('span', { class: 'event-meta', text: `${id !== null && id !== undefined ? `#${id}` : label || '—'} +${offset} ms` }),
        el('code', { text: JSON.stringify(event) })));
    }
  }

  // ---------------------------------------------------------------- the page

  const state = {
    functions: [],
    selected: null,
    fields: [],
    runs: new Map(), // function name → its latest Run
  };

  const $ = (id) => document.getElementById(id);

  async function loadHealth() {
    const health = $('health');
    try {
      const body = await api.health();
      health.textContent = `${body.status} · ${body.functions} functions`;
      health.className = `pill ${body.status === 'ok' ? 'pill-ok' : 'pill-warn'}`;
      showLoadErrors(Array.isArray(body.load_errors) ? body.load_errors : []);
    } catch (_) {
      health.textContent = 'gateway unreachable';
      health.className = 'pill pill-bad';
    }
  }

  function showLoadErrors(errors) {
    const banner = $('load-errors');
    clear(banner);
    banner.hidden = errors.length === 0;
    if (errors.length === 0) return;
    banner.append(el('p', { text: `${errors.length} manifest(s) failed to load, so their functions are missing:` }),
      el('ul', {}, errors.map((e) => el('li', {}, el('code', { text: String(e.file || e.path || '?') }), ` ${e.path ? `${e.path}: ` : ''}${e.reason || ''}`))));
  }

  async function loadManifest() {
    const list = $('function-list');
    try {
      const body = await api.manifest();
      state.functions = Array.isArray(body.functions) ? body.functions.slice() : [];
      state.functions.sort((a, b) => String(a.name).localeCompare(String(b.name)));
    } catch (error) {
      clear(list).append(el('li', { class: 'field-error' }, `The functions could not be loaded (${error.message}). `,
        el('button', { type: 'button', class: 'button', text: 'Try again', onclick: loadManifest })));
      return;
    }
    $('function-count').textContent = `(${state.functions.length})`;
    renderFunctionList();
    route();
  }

  function renderFunctionList() {
    const list = clear($('function-list'));
    const filter = $('function-filter').value.trim().toLowerCase();
    const shown = state.functions.filter((fn) => !filter || `${fn.name} ${fn.description || ''} ${fn.prefab || ''}`.toLowerCase().includes(filter));
    if (shown.length === 0) list.append(el('li', { class: 'muted', text: state.functions.length ? 'No function matches.' : 'The gateway serves no functions.' }));
    for (const fn of shown) {
      const run = state.runs.get(fn.name);
      const active = state.selected && state.selected.name === fn.name;
      list.append(el('li', {},
        el('a', { href: `#${encodeURIComponent(fn.name)}`, class: `fn-item${active ? ' active' : ''}`, 'aria-current': active ? 'page' : null, 'data-testid': `function-${fn.name}` },
          el('span', { class: 'fn-name' }, el('code', { text: fn.name }),
            run && !run.finished ? el('span', { class: 'running-dot', title: 'running', 'aria-label': 'running' }) : null),
          el('span', { class: 'fn-badges' },
            el('span', { class: `badge ${fn.streaming ? 'badge-stream' : 'badge-json'}`, text: fn.streaming ? 'streams' : 'JSON' }),
            fn.runtime ? el('span', { class: 'badge', text: String(fn.runtime) }) : null),
          fn.description ? el('span', { class: 'fn-desc', text: String(fn.description) }) : null)));
    }
  }

  function route() {
    const name = decodeURIComponent(location.hash.replace(/^#/, ''));
    const fn = state.functions.find((f) => f.name === name);
    if (fn) selectFunction(fn);
    else showWelcome();
  }

  function showWelcome() {
    state.selected = null;
    $('welcome').hidden = false;
    $('function-view').hidden = true;
    renderFunctionList();
  }

  function selectFunction(fn) {
    state.selected = fn;
    $('welcome').hidden = true;
    const view = clear($('function-view'));
    view.hidden = false;
    const params = Array.isArray(fn.parameters) ? fn.parameters.filter((p) => p && p.name) : [];
    state.fields = params.map(createField);
    view.append(functionCard(fn, state.fields), runSlot(fn));
    renderFunctionList();
  }

  function functionCard(fn, fields) {
    const returns = fn.returns && typeof fn.returns === 'object'
      ? [fn.returns.type ? `${fn.returns.type}` : '', fn.returns.description || ''].filter(Boolean).join(': ')
      : fn.returns ? String(fn.returns) : '';
    const runButton = el('button', { type: 'submit', class: 'button primary', 'data-testid': 'run', text: 'Run' });
    const form = el('form', { class: 'params', novalidate: true, 'data-testid': 'params-form', onsubmit: (e) => { e.preventDefault(); startRun(fn); } },
      fields.length ? fields.map((f) => f.node) : el('p', { class: 'muted', text: 'This function takes no inputs.' }),
      el('div', { class: 'actions' }, runButton,
        fields.length ? el('button', { type: 'button', class: 'button', 'data-testid': 'reset', text: 'Reset to defaults', onclick: () => resetFields(fields) }) : null,
        el('span', { class: 'muted small', text: fn.streaming ? 'Streams its events as they happen.' : 'Answers once, with JSON.' })));
    form.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); form.requestSubmit(runButton); }
    });
    return el('section', { class: 'card function', 'data-testid': 'function-view', 'aria-labelledby': 'function-title' },
      el('div', { class: 'function-head' },
        el('h1', { id: 'function-title' }, el('code', { text: fn.name })),
        el('span', { class: `badge ${fn.streaming ? 'badge-stream' : 'badge-json'}`, text: fn.streaming ? 'streaming' : 'non-streaming' }),
        fn.runtime ? el('span', { class: 'badge', text: `runtime: ${fn.runtime}` }) : null,
        fn.prefab ? el('span', { class: 'badge', text: `prefab: ${fn.prefab}` }) : null),
      fn.description ? el('p', { class: 'description', 'data-testid': 'function-description', text: String(fn.description) }) : null,
      returns ? el('p', { class: 'muted small' }, el('strong', { text: 'Returns ' }), returns) : null,
      el('h2', { class: 'section-title', text: 'Inputs' }),
      fields.some((f) => f.param.required) ? el('p', { class: 'muted small', text: 'Fields marked “required” must be filled in; empty optional fields are left out of the call. Ctrl+Enter runs.' }) : null,
      form);
  }

  function runSlot(fn) {
    const slot = el('div', { id: 'run-slot' });
    const run = state.runs.get(fn.name);
    if (run) slot.append(run.view.root);
    return slot;
  }

  function resetFields(fields) {
    for (const field of fields) {
      field.control.reset();
      field.dirty = false;
      setFieldError(field, '');
    }
  }

  function startRun(fn) {
    const { inputs, invalid } = collectInputs(state.fields);
    if (invalid.length > 0) {
      invalid[0].control.input.focus();
      return;
    }
    const previous = state.runs.get(fn.name);
    if (previous) previous.stop();
    const run = new Run(fn, inputs, {
      onFinish: () => renderFunctionList(),
      onInvalidInputs: (details) => {
        if (state.selected !== fn) return;
        for (const detail of details) {
          const field = state.fields.find((f) => detail && f.param.name === detail.parameter);
          if (field) setFieldError(field, `${field.param.name} ${detail.reason || 'is invalid'}`);
        }
      },
    });
    state.runs.set(fn.name, run);
    const slot = $('run-slot');
    if (slot) clear(slot).append(run.view.root);
    run.view.root.scrollIntoView({ block: 'nearest' });
    renderFunctionList();
    run.start();
  }

  function init() {
    $('function-filter').addEventListener('input', renderFunctionList);
    window.addEventListener('hashchange', () => {
      route();
      $('main').focus({ preventScroll: true });
    });
    loadHealth();
    loadManifest();
  }

  // Exposed for a console session or a test of the parser.
  window.PrefabPlayground = { SSEParser, normaliseType, readJSONText };

  init();
})();
