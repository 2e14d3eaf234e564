import { byNamePlugin } from './byname';
import { plugin } from './plugin';
import { restPlugin } from './rest';

export default [plugin, byNamePlugin, restPlugin];
