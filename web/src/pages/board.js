// The board (issue 16): #/repos/O/N/board — columns in order with their cards; writers drag
// a card (HTML5 drag and drop) to a place in any column, or use the card's "Move to" list
// (keyboard), and the order is kept by the server (POST …/issues/{n}/move with the column
// and the position among the other cards). Readers see the cards without move controls;
// owners also get the columns form (names, order, limits: PUT …/board/columns).
import { api } from '../api.js';
import { h } from '../dom.js';

function cardView(issue, ctx) {
  const card = h(
    'li',
    { class: 'card', 'data-number': issue.number, draggable: ctx.canWrite ? 'true' : undefined },
    h('a', { href: `#/repos/${ctx.owner}/${ctx.name}/issues/${issue.number}` }, `#${issue.number} ${issue.title}`),
    h(
      'div',
      { class: 'card-meta' },
      issue.priority !== 'none' ? h('span', { class: `prio prio-${issue.priority}` }, issue.priority) : null,
      issue.estimate ? h('span', { class: 'estimate' }, issue.estimate) : null,
      issue.assignees.length ? h('span', { class: 'muted-text' }, issue.assignees.join(', ')) : null,
    ),
  );
  if (!ctx.canWrite) return card;
  card.addEventListener('dragstart', (ev) => {
    ev.dataTransfer.setData('text/plain', String(issue.number));
    ev.dataTransfer.effectAllowed = 'move';
    card.classList.add('dragging');
  });
  card.addEventListener('dragend', () => card.classList.remove('dragging'));
  const move = h(
    'select',
    { class: 'card-move', 'aria-label': `Move #${issue.number} to` },
    h('option', { value: '' }, 'Move to…'),
    ctx.columns.filter((c) => c !== issue.column).map((c) => h('option', { value: c }, c)),
  );
  move.addEventListener('change', () => {
    if (move.value) ctx.move(issue.number, move.value, null);
  });
  card.append(move);
  return card;
}

export async function boardPage(main, { params }) {
  const [owner, name] = params;
  const base = `/repos/${encodeURIComponent(owner)}/${encodeURIComponent(name)}`;
  const error = h('p', { role: 'alert', class: 'error', id: 'board-error' });
  const status = h('p', { role: 'status', class: 'muted-text', id: 'board-status' });
  const boardBox = h('div', { class: 'board', id: 'board' });
  main.append(
    h('p', { class: 'crumbs' }, h('a', { href: `#/repos/${owner}/${name}` }, `${owner}/${name}`), ' / ', h('a', { href: `#/repos/${owner}/${name}/issues` }, 'Issues')),
    h('h1', {}, `Board of ${owner}/${name}`),
    error,
    status,
    boardBox,
  );
  const access = await api(`${base}/access`);
  const ctx = { owner, name, canWrite: access.can_write, columns: [] };

  async function load() {
    const board = await api(`${base}/board`);
    ctx.columns = board.columns.map((c) => c.name);
    boardBox.replaceChildren(
      ...board.columns.map((col) => {
        const cards = h('ul', { class: 'cards', 'aria-label': `${col.name} cards` }, col.issues.map((i) => cardView(i, ctx)));
        const section = h(
          'section',
          { class: 'board-col', 'data-column': col.name, 'aria-label': col.name },
          h('h2', {}, col.name, ' ', h('span', { class: 'muted-text count' }, col.limit ? `${col.count}/${col.limit}` : String(col.count))),
          cards,
        );
        if (ctx.canWrite) {
          section.addEventListener('dragover', (ev) => {
            ev.preventDefault();
            ev.dataTransfer.dropEffect = 'move';
            section.classList.add('drop-target');
          });
          section.addEventListener('dragleave', () => section.classList.remove('drop-target'));
          section.addEventListener('drop', (ev) => {
            ev.preventDefault();
            section.classList.remove('drop-target');
            const number = Number(ev.dataTransfer.getData('text/plain'));
            if (!number) return;
            // The position among the column's other cards: how many of them lie above the drop.
            const others = [...cards.querySelectorAll('li.card')].filter((c) => Number(c.dataset.number) !== number);
            const position = others.filter((c) => {
              const r = c.getBoundingClientRect();
              return r.top + r.height / 2 < ev.clientY;
            }).length;
            ctx.move(number, col.name, position);
          });
        }
        return section;
      }),
    );
  }

  ctx.move = async (number, column, position) => {
    error.textContent = '';
    try {
      const body = position == null ? { column } : { column, position };
      await api(`${base}/issues/${number}/move`, { method: 'POST', body });
      status.textContent = `Moved #${number} to ${column}.`;
    } catch (err) {
      error.textContent = err.message;
    }
    await load();
  };

  await load();
  if (access.role === 'owner') main.append(columnsForm(base, ctx, load, error));
  return null;
}

/**
 * Owners set the columns: one per line, `Name` or `Name: limit`, in order; the last is the
 * done column. Columns keep their cards by name; the server refuses removing one with cards.
 */
function columnsForm(base, ctx, load, error) {
  const area = h('textarea', { id: 'board-columns', rows: '6' });
  const fill = (columns) => {
    area.value = columns.map((c) => (c.limit ? `${c.name}: ${c.limit}` : c.name)).join('\n');
  };
  const form = h(
    'form',
    { class: 'stack', id: 'columns-form', 'aria-labelledby': 'columns-h' },
    h('h2', { id: 'columns-h' }, 'Columns'),
    h('label', { for: 'board-columns' }, 'One per line, in order, as "Name" or "Name: limit"; the last is the done column'),
    area,
    h('button', { type: 'submit', class: 'secondary' }, 'Save columns'),
  );
  api(`${base}/board`).then((b) => fill(b.columns)).catch(() => {});
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.textContent = '';
    const columns = area.value
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean)
      .map((l) => {
        const m = l.match(/^(.*?):\s*(\d+)$/);
        return m ? { name: m[1].trim(), limit: Number(m[2]) } : { name: l };
      });
    try {
      const board = await api(`${base}/board/columns`, { method: 'PUT', body: { columns } });
      fill(board.columns);
      await load();
    } catch (err) {
      error.textContent = err.message;
    }
  });
  return form;
}
