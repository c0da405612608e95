import fs from 'node:fs';
import { eapGraphSpec } from '../assignments/ioi/charts.ts';
import { chartFiles } from '../cli/plot.ts';
const r = JSON.parse(fs.readFileSync('/tmp/ioi-hand-out/ioi.json', 'utf8'));
const { files } = await chartFiles('x', eapGraphSpec({ model: 'hand', edges: r.eap.edges, L: 3, nh: 4, steps: 32, ...r.eap.knockout }), 't');
for (const [n, d] of files) if (n.endsWith('.png')) fs.writeFileSync('/tmp/eap.png', d);
