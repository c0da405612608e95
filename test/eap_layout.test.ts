// eapLayout (assignments/ioi/charts.ts): where the EAP circuit graph draws its nodes and edges, in
// pixels of the plot, y upward. Expected positions are worked out by hand from the geometry
// (EAP in charts.ts): a gutter of 64 px, at least 560 px wide; head boxes 54 × 34, other boxes
// 60 × 22; rows of heads 100 px high, rows of one other node 56; 4 px between bands; q and v enter
// 15 px either side of a head's centre; a line keeps 8 px from a box, and one that would cross a box
// passes it 12 px beyond its edge.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { eapLayout } from '../assignments/ioi/charts.ts';

const edge = (from: string, to: string, score = 1) => ({ from, to, score });
const at = (g: ReturnType<typeof eapLayout>, name: string) => {
  const n = g.nodes.find((m) => m.name === name)!;
  return [n.x, n.y];
};

test('eapLayout: a row of heads spans the width, embed and logits at the centre, edges from a top into a port', () => {
  const g = eapLayout([edge('embed', 'a0.0.q'), edge('embed', 'a0.1.v'), edge('a0.0', 'logits')]);
  // two heads share the 496 px right of the gutter: centres at 64 + 124 and 64 + 372; the centre (64 + 560) / 2
  assert.is(g.width, 560);
  assert.equal(at(g, '0.0'), [188, 110]);
  assert.equal(at(g, '0.1'), [436, 110]);
  assert.equal(at(g, 'embed'), [312, 28]);
  assert.equal(at(g, 'logits'), [312, 192]);
  // input 0-56, 4 px, layer 0 60-160, 4 px, output 164-220
  assert.is(g.height, 220);
  assert.equal(g.bands, [{ label: 'input', y: 0, y2: 56 }, { label: 'layer 0', y: 60, y2: 160 }, { label: 'output', y: 164, y2: 220 }]);
  // out of embed's top (28 + 11) into 0.0's q (188 − 15) and 0.1's v (436 + 15) on their lower edges (110 − 17)
  assert.equal(g.edges.map((e) => e.points), [[[312, 39], [173, 93]], [[312, 39], [451, 93]], [[188, 127], [312, 181]]]);
  // the letters 8 px above the lower edge; dark where an edge enters
  assert.equal(g.ports.slice(0, 3), [{ x: 173, y: 101, input: 'q', used: true }, { x: 188, y: 101, input: 'k', used: false }, { x: 203, y: 101, input: 'v', used: false }]);
});

test('eapLayout: a line that would cross a box between its ends passes beside it', () => {
  const g = eapLayout([edge('a0.0', 'a2.0.k'), edge('a0.1', 'a1.1.q'), edge('a1.0', 'a2.1.v')]);
  // three rows of two heads: centres 50, 154, 258; x 188 and 436
  assert.equal(g.nodes.map((n) => [n.name, n.x, n.y]), [['0.0', 188, 50], ['0.1', 436, 50], ['1.0', 188, 154], ['1.1', 436, 154], ['2.0', 188, 258], ['2.1', 436, 258]]);
  // 0.0 → 2.0 runs straight up through 1.0: it passes 1.0 on its right, 188 + 27 + 12 = 227, from
  // 8 px below 1.0's box to 8 px above it (154 ∓ 25)
  assert.equal(g.edges[0].points, [[188, 67], [227, 129], [227, 179], [188, 241]]);
  assert.equal(g.edges[1].points, [[436, 67], [421, 137]]);
  assert.equal(g.edges[2].points, [[188, 171], [451, 241]]);
});

test('eapLayout: a node alone in its row moves off a line passing through its row, to the nearest place clear of it', () => {
  const g = eapLayout([edge('embed', 'logits'), edge('a0.0', 'm0')]);
  // embed → logits runs straight up at x 312. Head 0.0 (27 px either side, 8 px margin) is clear of
  // it from x ≤ 277 or x ≥ 347; of the places tried (91 + 4i, 91 its leftmost) 347 is the nearest the
  // centre. MLP 0 wants to sit over 0.0 (347), and is clear of the line from 350 (312 + 30 + 8).
  assert.equal(at(g, '0.0'), [347, 110]);
  assert.equal(at(g, 'MLP 0'), [350, 188]);
  // the head and its MLP share layer 0's band
  assert.equal(g.bands, [{ label: 'input', y: 0, y2: 56 }, { label: 'layer 0', y: 60, y2: 216 }, { label: 'output', y: 220, y2: 276 }]);
  assert.equal(g.edges.map((e) => e.points), [[[312, 39], [312, 237]], [[347, 127], [350, 177]]]);
});

test.run();
